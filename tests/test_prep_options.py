"""PrepOptions: every problem reported at once, defaults stated once (the CLI takes them from the dataclass), and the
one set of prep options shared by `swiftkit prep` and `swiftkit prep-all`."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from datasets_prep.options import PrepOptions, PrepOptionsError
from datasets_prep.pipeline import prep
from swiftkit.cli import main as swiftkit_main
from swiftkit.cli.commands import prep as cmd_prep
from swiftkit.cli.commands import prep_all as cmd_prep_all

SAMPLES = Path(__file__).resolve().parents[1] / "datasets_prep" / "samples"


def _parse(module, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_validate_reports_every_problem_at_once_one_line_each(tmp_path):
    bad = PrepOptions(val_ratio=1.5, score_choices=(1.0, float("nan")), max_length=0, over_length="cut",
                      model_name=("沐雪",), encoding="no-such-codec", columns="a=b,a=c", score_from="a..b")
    with pytest.raises(PrepOptionsError) as caught:
        prep("muice", SAMPLES / "muice", tmp_path / "o", bad)
    assert caught.value.problems == [
        "--val-ratio 1.5: must be in [0, 1)",
        "--score-choices 1.0,nan: nan is not a finite number",
        "--max-length 0: must be positive",
        "--over-length cut: choose keep, truncate, drop",
        "--model-name: give two values, ZH and EN",
        "--encoding no-such-codec: unknown encoding (e.g. utf-8, gbk, gb18030, utf-8-sig)",
        "--columns 'a=b,a=c': column 'a' is renamed twice",
        "--score-from 'a..b': expected a dotted field path such as metrics.quality_f1",
    ]
    assert str(caught.value) == "\n".join(caught.value.problems)
    assert not (tmp_path / "o").exists()  # refused before anything was read or written
    assert PrepOptions().problems() == []
    PrepOptions().validate()


def test_cli_prints_every_problem(tmp_path, capsys):
    code = swiftkit_main(["prep", "muice", "--src", str(SAMPLES / "muice"), "--out", str(tmp_path / "o"),
                          "--no-progress", "--val-ratio", "2", "--max-length", "0", "--encoding", "nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == ["swiftkit prep: error: --val-ratio 2.0: must be in [0, 1)", "--max-length 0: must be positive",
                   "--encoding nope: unknown encoding (e.g. utf-8, gbk, gb18030, utf-8-sig)"]


@pytest.mark.parametrize("module, argv", [
    (cmd_prep, ["muice", "--src", "s", "--out", "o"]),
    (cmd_prep_all, []),
])
def test_cli_defaults_are_the_dataclass_defaults(module, argv):
    args = _parse(module, argv)
    given = None if module is cmd_prep else {field: {} for field in cmd_prep.PER_SOURCE}
    assert cmd_prep.prep_options(args, given, "muice") == PrepOptions()


def test_every_field_is_a_prep_option_or_deliberately_not_one():
    """A new PrepOptions field must be offered by the CLI (or named here as library-only): the sets cover them."""
    cli = set(cmd_prep.SHARED) | set(cmd_prep.ONE_SOURCE) | set(cmd_prep.RESOLVED)
    library_only = {"token_stats", "histogram"}
    assert cli | library_only == {f.name for f in dataclasses.fields(PrepOptions)}
    assert set(cmd_prep.PER_SOURCE) <= set(cmd_prep.SHARED)


def test_prep_all_passes_every_shared_option_and_per_source_ones_to_their_source():
    argv = ["--sources", "medical_r1", "actions", "--seed", "7", "--val-ratio", "0.2", "--max-length", "99",
            "--score-choices", "1,2", "--single-turn", "--keep-duplicates", "--over-length", "drop",
            "--score-from", "medical_r1=metrics.quality_f1", "--encoding", "actions=gbk",
            "--columns", "actions=acts=行动,q=问题"]
    args = _parse(cmd_prep_all, argv)
    given = {f: cmd_prep_all.per_source_values(f, getattr(args, f), args.sources) for f in cmd_prep.PER_SOURCE}
    shared = dict(seed=7, val_ratio=0.2, max_length=99, score_choices=[1.0, 2.0], single_turn=True,
                  keep_duplicates=True, over_length="drop")
    assert cmd_prep.prep_options(args, given, "medical_r1") == PrepOptions(**shared, score_from="metrics.quality_f1")
    assert cmd_prep.prep_options(args, given, "actions") == PrepOptions(**shared, encoding="gbk",
                                                                        columns="acts=行动,q=问题")
    with pytest.raises(SystemExit):  # a system prompt or persona name is one source's: prep-all does not take it
        _parse(cmd_prep_all, ["--system", "x"])


def test_prep_all_keep_duplicates_reaches_the_pipeline(tmp_path, capsys):
    """The bundled medical_r1 samples hold one exact duplicate: dropped by default, kept with --keep-duplicates."""
    base = ["prep-all", "--src-dir", str(SAMPLES), "--sources", "medical_r1", "--no-progress"]
    assert swiftkit_main([*base, "--out", str(tmp_path / "a")]) == 0
    assert swiftkit_main([*base, "--out", str(tmp_path / "b"), "--keep-duplicates", "--seed", "3"]) == 0
    a = json.loads((tmp_path / "a" / "medical_r1" / "manifest.json").read_text(encoding="utf-8"))
    b = json.loads((tmp_path / "b" / "medical_r1" / "manifest.json").read_text(encoding="utf-8"))
    assert (a["duplicates"], a["duplicates_kept"]) == (1, 0)
    assert (b["duplicates"], b["duplicates_kept"]) == (0, 1)
    assert b["options"]["keep_duplicates"] is True and b["options"]["seed"] == 3
    assert "kept 1 duplicate(s)" in capsys.readouterr().out


def test_prep_all_reports_shared_problems_once_and_a_sources_own_with_its_name(tmp_path, capsys):
    code = swiftkit_main(["prep-all", "--src-dir", str(SAMPLES), "--out", str(tmp_path / "o"), "--no-progress",
                          "--sources", "muice", "actions", "--val-ratio", "2", "--encoding", "actions=nope"])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "swiftkit prep-all: error: --val-ratio 2.0: must be in [0, 1)",
        "actions: --encoding nope: unknown encoding (e.g. utf-8, gbk, gb18030, utf-8-sig)"]
    assert not (tmp_path / "o").exists()  # nothing converted before the options were checked
    for bad in ("gbk", "fortune=gbk"):  # no source named; a source not converted in this run
        assert swiftkit_main(["prep-all", "--src-dir", str(SAMPLES), "--out", str(tmp_path / "o"), "--no-progress",
                              "--sources", "actions", "--encoding", bad]) == 1
        assert capsys.readouterr().err.startswith(f"swiftkit prep-all: error: --encoding '{bad}': ")


def test_options_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PrepOptions().seed = 1  # type: ignore[misc]
    assert dataclasses.replace(PrepOptions(), seed=1).seed == 1
