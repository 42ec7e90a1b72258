"""The prep benchmark runs end to end at a small size and its figures are consistent."""
from __future__ import annotations

import json

from benchmarks import prep_bench


def test_generated_data_has_every_shape_bad_rows_and_duplicates(tmp_path):
    path = tmp_path / "g.jsonl"
    prep_bench.generate(path, 2000)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000
    parsed = []
    bad = 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    assert 5 <= bad <= 50
    assert {frozenset(r) & {"conversation", "completion", "respond", "messages"} for r in parsed} == {
        frozenset({"conversation"}), frozenset({"completion"}), frozenset({"respond"}), frozenset({"messages"})}
    assert len(set(lines)) < len(lines) - bad  # exact duplicates present


def test_bench_small_run(tmp_path):
    results = prep_bench.bench(records=1000, workdir=tmp_path)
    assert sorted(results) == [1000, 10_000]
    for n, r in results.items():
        assert r["naive"]["records"] < n  # bad rows skipped
        assert r["prep"]["records"] == n  # prep reads (and accounts for) every line
        assert 0 < r["tokens"]["records"] < n
        assert all(r[k]["seconds"] > 0 and r[k]["peak_rss_mib"] > 0 for k in r)
    lines = prep_bench.report(results)
    assert len(lines) == 5 and lines[-1].startswith("prep memory: peak 10000 / peak 1000 = ")
