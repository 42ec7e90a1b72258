"""Issue 9 ("Trust"), the prep part: the attacks replayed against `swiftkit prep` / `datasets_prep`.

Data loss (--out overlapping --src, two preps into one --out), tracebacks instead of one line (records that
cannot be parsed, OS errors), stopping (SIGTERM/SIGINT, SIGKILL) and the smaller ones (nan scores, special files
under --src, output permissions). Root ignores file permissions, so unreadable and read-only paths are
simulated by making the one OS call fail as the kernel would; a FIFO, a full disk (patched write) and signals
are real.
"""
from __future__ import annotations

import builtins
import dataclasses
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from datasets_prep import interrupt, outdir, sourcefiles
from datasets_prep.options import PrepOptions
from datasets_prep.pipeline import prep
from datasets_prep.registry import SOURCES
from swiftkit.cli import main as swiftkit_main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "datasets_prep" / "samples"
ALPACA = SAMPLES / "generic" / "alpaca.json"
OUTPUTS = {"train.jsonl", "val.jsonl", "rejects.jsonl", "manifest.json"}


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = swiftkit_main(["prep", *argv, "--no-progress"])
    return code, capsys.readouterr().err.strip()


def _one_line(code: int, err: str) -> str:
    assert code == 1 and err and "\n" not in err and "Traceback" not in err, err
    assert err.startswith("swiftkit prep: error: ")
    return err.removeprefix("swiftkit prep: error: ")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_rows(path: Path, rows: list[dict], n: int = 0) -> Path:
    rows = rows or [{"prompt": f"问题{i}", "completion": f"回答{i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _assert_consistent(out: Path) -> dict[str, Any]:
    """A finished prep: a manifest whose counts and sha256 describe exactly the files beside it."""
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for name, digest in m["outputs"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    train = (out / "train.jsonl").read_bytes().splitlines()
    val = (out / "val.jsonl").read_bytes().splitlines()
    assert (len(train), len(val)) == (m["train"], m["val"])
    assert not set(train) & set(val)
    assert m["read"] == m["train"] + m["val"] + m["rejected"] + m["duplicates"]
    return m


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == outdir.LOCK_NAME)


# --- data loss: --out overlapping --src --------------------------------------------------------------------------

def _muice_copy(tmp_path: Path) -> Path:
    src = tmp_path / "Muice"
    (src / "Customized").mkdir(parents=True)
    for rel in ("train.jsonl", "test.jsonl", "Customized/self_cognition.jsonl"):
        (src / rel).write_bytes((SAMPLES / "muice" / rel).read_bytes())
    return src


@pytest.mark.parametrize("case", ["same", "out_inside_src", "src_file_inside_out", "src_folder_inside_out",
                                  "linked_input_inside_out", "same_through_link"])
def test_out_overlapping_src_is_refused_and_source_untouched(tmp_path, capsys, case):
    src = _muice_copy(tmp_path)
    argv = {
        "same": (src, src),
        "out_inside_src": (src, src / "out"),
        "src_file_inside_out": (src / "train.jsonl", src),
        "src_folder_inside_out": (src / "Customized", src),
        "linked_input_inside_out": (tmp_path / "linked", src),
        "same_through_link": (tmp_path / "alias", src),
    }[case]
    if case == "linked_input_inside_out":  # a folder of links: the file really read lies inside --out
        (tmp_path / "linked").mkdir()
        (tmp_path / "linked" / "data.jsonl").symlink_to(src / "train.jsonl")
    if case == "same_through_link":
        (tmp_path / "alias").symlink_to(src)
    before = _snapshot(src)
    message = _one_line(*_cli(capsys, "muice", "--src", str(argv[0]), "--out", str(argv[1])))
    expected = {
        "same": f"--out {src} is --src {src}: the outputs would replace the source files",
        "out_inside_src": f"--out {src / 'out'} is inside --src {src}: the outputs would be read as input",
        "src_file_inside_out": f"--src {src / 'train.jsonl'} is inside --out {src}: the outputs could replace",
        "src_folder_inside_out": f"--src {src / 'Customized'} is inside --out {src}: the outputs could replace",
        # refused before the overlap is looked at: the link leads out of --src (issue 19)
        "linked_input_inside_out": f"{tmp_path / 'linked' / 'data.jsonl'}: a symbolic link to {src / 'train.jsonl'}, "
                                   f"outside --src {tmp_path / 'linked'}",
        "same_through_link": f"--out {src} is --src {tmp_path / 'alias'}: the outputs would replace",
    }[case]
    assert expected in message
    assert _snapshot(src) == before  # nothing written into the source, nothing replaced


def test_out_beside_src_still_works(tmp_path):
    src = _muice_copy(tmp_path)
    m = prep("muice", src, tmp_path / "Muice-out", PrepOptions(token_stats=False))  # a sibling whose name starts like --src
    assert m["train"] == 19 and m["val"] == 4


# --- data loss: two preps into one --out ---------------------------------------------------------------------------

def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM as a terminal user has them. A suite started in the background of a
    non-interactive shell (`bash .ci/run &`) inherits SIGINT ignored, and the prep would then never see Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _swiftkit(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "swiftkit.cli", "prep", *argv, "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"ended early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.005)


def _lock_holder(out: Path) -> str:
    try:
        return (out / outdir.LOCK_NAME).read_text().strip()
    except FileNotFoundError:
        return ""


def test_second_prep_into_same_out_fails_at_once_and_first_finishes_intact(tmp_path, capsys):
    big = _write_rows(tmp_path / "a.jsonl", [], n=8000)
    other = _write_rows(tmp_path / "b.jsonl", [], n=30)
    out = tmp_path / "out"
    first = _swiftkit("muice", "--src", str(big), "--out", str(out))
    _wait_for(lambda: _lock_holder(out) == str(first.pid), first)
    # Paused while it holds the lock, so the second prep meets it whatever the machine's load (it used to finish
    # first on a busy machine). A second prep that waited for the lock would wait forever: the timeout fails it.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert first.poll() is None
        second = _swiftkit("muice", "--src", str(other), "--out", str(out))
        _, err = second.communicate(timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    message = _one_line(second.returncode, err.strip())
    assert message == (f"--out {out}: another prep (pid {first.pid}) is writing there; wait for it to finish or "
                       "choose another --out")
    assert first.wait(timeout=300) == 0, first.stderr.read()
    m = _assert_consistent(out)
    assert m["read"] == 8000 and m["inputs"] == {"a.jsonl": hashlib.sha256(big.read_bytes()).hexdigest()}
    assert _leftovers(out) == []


_HOLD = ("import sys, time\nfrom datasets_prep.outdir import OutputDir\nOutputDir(sys.argv[1]).__enter__()\n"
         "print('locked', flush=True)\ntime.sleep(300)\n")


def test_lock_names_holder_and_is_never_stale_after_a_crash(tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out)))
        assert f"another prep (pid {holder.pid}) is writing there" in message
    finally:
        holder.kill()  # SIGKILL: no clean-up ran, the lock file is still there
        holder.wait()
    assert (out / outdir.LOCK_NAME).read_text().strip() == str(holder.pid)
    assert _cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out))[0] == 0
    assert _leftovers(out) == []  # the OS dropped the dead holder's lock; the file went with the run that took it


# --- stopping: SIGTERM / SIGINT / SIGKILL -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def large_src(tmp_path_factory) -> Path:
    from benchmarks import prep_bench

    path = tmp_path_factory.mktemp("large") / "large.jsonl"
    prep_bench.generate(path, 40_000)
    return path


def _writing(out: Path) -> bool:
    return any(p.name.startswith(".train.jsonl.") and p.stat().st_size > 0 for p in out.glob(".*.tmp"))


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_write_removes_temp_files_and_keeps_old_outputs(tmp_path, large_src, signum, status):
    out = tmp_path / "out"
    prep("muice", _write_rows(tmp_path / "old.jsonl", [], n=20), out, PrepOptions(token_stats=False))
    old = _snapshot(out)
    proc = _swiftkit("muice", "--src", str(large_src), "--out", str(out))
    _wait_for(lambda: _writing(out), proc)  # temp files are being filled
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    name = signal.Signals(signum).name
    assert err.strip() == f"swiftkit prep: interrupted by {name}; no partial output left in {out}"
    assert _leftovers(out) == []
    now = _snapshot(out)
    assert "manifest.json" not in now  # the interrupted run did not finish: no manifest says so
    assert now == {k: v for k, v in old.items() if k != "manifest.json"}  # the old data, not a half-written one


def test_killed_prep_temp_files_are_removed_by_the_next_run(tmp_path, large_src, capsys):
    out = tmp_path / "out"
    proc = _swiftkit("muice", "--src", str(large_src), "--out", str(out))
    _wait_for(lambda: _writing(out), proc)
    proc.kill()
    proc.wait()
    assert [p for p in out.iterdir() if p.name.endswith(".tmp")]  # SIGKILL cannot be caught: they are left
    assert _cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out))[0] == 0
    assert _leftovers(out) == [] and sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS | {"lengths.png"})


def test_signal_during_commit_waits_until_every_output_is_in_place(tmp_path, monkeypatch):
    """The renames that publish the outputs are not cut in half: the signal takes effect after the manifest."""
    out = tmp_path / "out"
    prep("alpaca", ALPACA, out, PrepOptions(token_stats=False))
    real_replace = os.replace
    sent = []

    def replace_then_signal(a, b):
        if not sent:
            sent.append(b)
            os.kill(os.getpid(), signal.SIGTERM)  # delivered at once, between this rename and the next
            time.sleep(0.05)
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace_then_signal)
    with interrupt.stop_on_signals(), pytest.raises(interrupt.Interrupted) as stopped:
        prep("muice", _write_rows(tmp_path / "new.jsonl", [], n=30), out, PrepOptions(token_stats=False))
    assert stopped.value.exit_code == 143 and Path(sent[0]).name == "train.jsonl"
    m = _assert_consistent(out)  # all new, manifest included
    assert m["source"] == "muice" and m["read"] == 30
    assert _leftovers(out) == []


def test_stop_on_signals_restores_handlers_and_raises_once():
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(interrupt.Interrupted) as stopped:
        with interrupt.stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second one while unwinding does not cut the clean-up short
                time.sleep(0.05)
                cleaned.append(True)
    assert cleaned == [True] and stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before


# --- records that cannot be parsed or written: one reject each -----------------------------------------------------

def _rejects(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]


def test_jsonl_nested_5000_deep_is_one_reject(tmp_path):
    src = tmp_path / "deep.jsonl"
    src.write_text('{"prompt": "a", "completion": "b"}\n' + "[" * 5000 + "]" * 5000 + "\n"
                   + '{"prompt": "' + "{" * 5000 + '", "completion": "d"}\n'  # deep-looking text is just text
                   + '{"x": ' * 5000 + "1" + "}" * 5000 + "\n", encoding="utf-8")
    m = prep("muice", src, tmp_path / "out", PrepOptions(token_stats=False, val_ratio=0))
    assert (m["read"], m["train"], m["rejected"]) == (4, 2, 2)
    assert [(r["file"], r["line"], r["reason"].split(":")[0]) for r in _rejects(tmp_path / "out")] == [
        ("deep.jsonl", 2, "invalid JSON"), ("deep.jsonl", 4, "invalid JSON")]
    assert "depth limit exceeded" in _rejects(tmp_path / "out")[0]["reason"]


def test_json_array_deep_record_and_lone_surrogate_are_rejects_the_rest_kept(tmp_path):
    src = tmp_path / "arr.json"
    src.write_text('[\n{"prompt": "a", "completion": "b"},\n' + "[" * 5000 + '"x]}", {"y": "["}' + "]" * 5000 + ",\n"
                   + '{"prompt": "\\ud800", "completion": "x"},\n'
                   + '{"prompt": "c", "completion": "\\udfff\\ud800"},\n'
                   + '{"prompt": "\\ud83d\\ude00", "completion": "pair is fine"},\n'
                   + '{"prompt": "e", "completion": "f"}\n]\n', encoding="utf-8")
    m = prep("muice", src, tmp_path / "out", PrepOptions(token_stats=False, val_ratio=0))
    assert (m["read"], m["train"], m["rejected"]) == (6, 3, 3)
    assert [(r["file"], r["line"], r["reason"]) for r in _rejects(tmp_path / "out")] == [
        ("arr.json", 3, "invalid JSON: nested too deep to parse"),
        ("arr.json", 4, "lone surrogate \\ud800 (not valid Unicode)"),
        ("arr.json", 5, "lone surrogate \\udfff (not valid Unicode)")]
    train = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    users = [json.loads(x)["messages"][1]["content"] for x in train]
    assert users == ["a", "😀", "e"]


def test_json_array_deep_record_that_never_ends_is_one_line(tmp_path, capsys):
    src = tmp_path / "arr.json"
    src.write_text('[{"prompt": "a", "completion": "b"}, ' + "[" * 5000, encoding="utf-8")
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(tmp_path / "out")))
    assert message == ("arr.json:1: invalid JSON array (a record nested too deep to parse does not end); records "
                       "after it cannot be read")


def test_record_that_cannot_be_written_is_a_reject(tmp_path, monkeypatch):
    """Whatever reader lets a lone surrogate through, writing that record rejects it alone, with file:line."""
    real = SOURCES["muice"].convert

    def convert(obj):
        fields = real(obj)
        if obj.get("prompt") == "bad":
            fields["turns"][1]["content"] = "坏\ud800"
        return fields

    monkeypatch.setitem(SOURCES, "muice", dataclasses.replace(SOURCES["muice"], convert=convert))
    src = _write_rows(tmp_path / "s.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "bad", "completion": "c"},
                                             {"prompt": "d", "completion": "e"}])
    m = prep("muice", src, tmp_path / "out", PrepOptions(token_stats=False, val_ratio=0))
    assert (m["read"], m["train"], m["rejected"]) == (3, 2, 1)
    (rej,) = _rejects(tmp_path / "out")
    assert (rej["file"], rej["line"]) == ("s.jsonl", 2)
    assert rej["reason"] == "cannot be written as JSON: str is not valid UTF-8: surrogates not allowed"


def test_undecodable_file_name_is_written_escaped(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    name = os.fsdecode(b"\xff-data.jsonl")
    _write_rows(folder / name, [{"prompt": "a", "completion": "b"}, {"text": 1}])
    m = prep("muice", folder, tmp_path / "out", PrepOptions(token_stats=False, val_ratio=0))
    assert list(m["inputs"]) == ["\\xff-data.jsonl"] and _rejects(tmp_path / "out")[0]["file"] == "\\xff-data.jsonl"


# --- OS errors: one line naming the path --------------------------------------------------------------------------

def _fail_for(monkeypatch, module: Any, name: str, paths: list[Path], err: int) -> None:
    """``module.name(path, ...)`` raises ``err`` as the kernel would, for ``paths`` (and anything under them)."""
    real = getattr(module, name, None) or getattr(builtins, name)
    targets = [str(p) for p in paths]

    def failing(path, *args, **kwargs):
        text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
        if any(text == t or text.startswith(t + os.sep) for t in targets):
            raise OSError(err, os.strerror(err), text)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, name, failing, raising=False)


def _out_with_old_outputs(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    prep("alpaca", ALPACA, out, PrepOptions(token_stats=False))
    return out, _snapshot(out)


def test_unreadable_file_is_one_line(tmp_path, capsys, monkeypatch):
    out, old = _out_with_old_outputs(tmp_path)
    src = _write_rows(tmp_path / "s.jsonl", [], n=5)
    _fail_for(monkeypatch, sourcefiles, "open", [src], errno.EACCES)  # sourcefiles' own `open`
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(out)))
    assert message == f"{src}: cannot read: Permission denied"
    assert _snapshot(out) == {k: v for k, v in old.items() if k != "manifest.json"} and _leftovers(out) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_for_real(tmp_path, capsys):
    src = _write_rows(tmp_path / "s.jsonl", [], n=5)
    src.chmod(0)
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(tmp_path / "out")))
    assert message == f"{src}: cannot read: Permission denied"


def test_unreadable_subfolder_is_one_line_not_skipped(tmp_path, capsys, monkeypatch):
    src = _muice_copy(tmp_path)
    _fail_for(monkeypatch, os, "scandir", [src / "Customized"], errno.EACCES)
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(tmp_path / "out")))
    assert message == f"{src / 'Customized'}: cannot read the folder: Permission denied"
    assert not (tmp_path / "out").exists()


@pytest.fixture
def deadline():
    """Fail instead of hanging: opening a FIFO for reading blocks until a writer comes."""
    def expired(signum, frame):
        raise AssertionError("timed out: blocked reading a FIFO")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("where", ["Customized/pipe.jsonl", "notes", "sub/deeper.fifo"])
def test_fifo_under_src_is_one_line_not_skipped(tmp_path, capsys, deadline, where):
    src = _muice_copy(tmp_path)
    (src / where).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(src / where)
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(tmp_path / "out")))
    assert message == (f"{src / where}: a FIFO, not a file or folder; prep reads only files and folders, "
                       "move it out of --src")


def test_fifo_as_src_and_broken_link_are_one_line(tmp_path, capsys, deadline):
    os.mkfifo(tmp_path / "p.jsonl")
    message = _one_line(*_cli(capsys, "muice", "--src", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "out")))
    assert message.startswith(f"{tmp_path / 'p.jsonl'}: a FIFO, not a file or folder")
    src = _muice_copy(tmp_path)
    (src / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(tmp_path / "out")))
    assert message == f"{src / 'gone.jsonl'}: broken symbolic link (its target does not exist)"


def test_hidden_entries_and_folder_links_are_fine(tmp_path):
    src = _muice_copy(tmp_path)
    os.mkfifo(src / ".hidden.jsonl")  # hidden entries are not data: skipped as before
    (src / "more").mkdir()  # links that stay inside --src are followed (issue 19: none may lead out)
    _write_rows(src / "more" / "x.jsonl", [{"prompt": "链接", "completion": "里的"}])
    (src / "Customized" / "linked").symlink_to(src / "more")
    (src / "more" / "loop").symlink_to("..")  # a loop is read once
    m = prep("muice", src, tmp_path / "out", PrepOptions(token_stats=False))
    assert m["read"] == 23  # the published layout: Customized/*.jsonl only, as before


@pytest.mark.parametrize("kind", ["file", "below_a_file"])
def test_out_that_is_a_file_is_one_line(tmp_path, capsys, kind):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if kind == "file" else tmp_path / "f" / "sub"
    message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out)))
    assert message == f"--out {out}: not a folder (a file is in the way)"
    assert (tmp_path / "f").read_text() == "x"


def test_read_only_out_is_one_line(tmp_path, capsys, monkeypatch):
    out, old = _out_with_old_outputs(tmp_path)
    _fail_for(monkeypatch, os, "open", [out], errno.EROFS)  # every file creation in --out
    message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out)))
    assert message == f"--out {out}: cannot write there: Read-only file system"
    assert _snapshot(out) == old


def test_out_that_cannot_be_created_is_one_line(tmp_path, capsys, monkeypatch):
    _fail_for(monkeypatch, os, "mkdir", [tmp_path / "ro"], errno.EACCES)
    out = tmp_path / "ro" / "out"
    message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out)))
    assert message == f"--out {out}: cannot create the folder: Permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_for_real(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out)))
    assert message == f"--out {out}: cannot write there: Permission denied"


class _FullDisk:
    """A file whose writes fail as on a full disk once ``limit`` bytes are in."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit, self.written = inner, limit, 0

    def write(self, data):
        if self.written + len(data) > self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        return self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


def test_full_disk_is_one_line_and_keeps_old_outputs(tmp_path, capsys, monkeypatch):
    out, old = _out_with_old_outputs(tmp_path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k), limit=10_000))
    src = _write_rows(tmp_path / "s.jsonl", [], n=3000)  # train.jsonl outgrows the space left
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(out)))
    assert message == f"{out / 'train.jsonl'}: cannot write: No space left on device"
    assert _snapshot(out) == {k: v for k, v in old.items() if k != "manifest.json"} and _leftovers(out) == []


def test_full_disk_at_sync_replaces_nothing(tmp_path, capsys, monkeypatch):
    """The space runs out while the second output is synced: every output is synced before any is renamed."""
    out, old = _out_with_old_outputs(tmp_path)
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    src = _write_rows(tmp_path / "s.jsonl", [], n=30)
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(out)))
    assert message == f"{out / 'val.jsonl'}: cannot write: No space left on device"
    assert _snapshot(out) == {k: v for k, v in old.items() if k != "manifest.json"} and _leftovers(out) == []


# --- smaller ones ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("choices", ["nan", "8,inf", "-inf,9"])
def test_score_choices_not_finite_refused(tmp_path, capsys, choices):
    out = tmp_path / "out"
    message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out),
                              f"--score-choices={choices}"))
    assert message.startswith("--score-choices ") and "is not a finite number" in message
    assert not out.exists()


def test_system_that_is_not_text_refused(tmp_path, capsys):
    message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out",
                              str(tmp_path / "out"), "--system", os.fsdecode(b"bad \xff")))
    assert message == "--system 'bad \\\\xff': not valid text (undecodable bytes or a lone surrogate)"


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_outputs_are_normal_files_under_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        prep("alpaca", ALPACA, tmp_path / "out")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert modes == {name: 0o666 & ~mask for name in OUTPUTS | {"lengths.png"}}


def test_make_prep_gives_the_same_one_line_errors(tmp_path, capsys):
    
    src_dir = tmp_path / "downloads"
    (src_dir / "muice").mkdir(parents=True)
    _write_rows(src_dir / "muice" / "m.jsonl", [], n=5)
    assert swiftkit_main(["prep-all", "--src-dir", str(src_dir), "--out", str(src_dir), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"swiftkit prep-all: error: --out {src_dir / 'muice'} is --src {src_dir / 'muice'}: the outputs would "
                   "replace the source files; choose another --out")
    os.mkfifo(src_dir / "muice" / "p.jsonl")
    assert swiftkit_main(["prep-all", "--src-dir", str(src_dir), "--out", str(tmp_path / "data"), "--no-progress"]) == 1
    assert capsys.readouterr().err.strip() == (f"swiftkit prep-all: error: {src_dir / 'muice' / 'p.jsonl'}: a FIFO, not a file "
                                               "or folder; prep reads only files and folders, move it out of --src")


# --- issue 19: the prep leftovers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["symlink", "dangling_symlink", "hard_link", "foreign_file"])
def test_lock_that_is_not_preps_own_is_refused_and_its_target_untouched(tmp_path, capsys, kind):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("do not overwrite\n")
    lock = out / outdir.LOCK_NAME
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling_symlink":  # O_CREAT through a dangling link would create the target
        lock.symlink_to(tmp_path / "created.txt")
    elif kind == "hard_link":
        os.link(victim, lock)
    else:
        lock.write_text("my notes\n")
    message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out)))
    expected = {"symlink": "a symbolic link, not a prep lock; prep never writes through a link: remove it",
                "dangling_symlink": "a symbolic link, not a prep lock; prep never writes through a link: remove it",
                "hard_link": "a hard link (2 names for one file), not a prep lock; prep will not overwrite it: "
                             "remove it",
                "foreign_file": "a file holding other data, not a prep lock; prep will not overwrite it: remove it"}
    assert message == f"{lock}: {expected[kind]}"
    assert victim.read_text() == "do not overwrite\n"
    assert not (tmp_path / "created.txt").exists()
    assert os.path.lexists(lock) and sorted(p.name for p in out.iterdir()) == [outdir.LOCK_NAME]
    if kind == "foreign_file":
        assert lock.read_text() == "my notes\n"


@pytest.mark.parametrize("lead", ["\n" * 5000, " \t\r\n" * 20_000, "\ufeff" + "\n" * 70_000],
                         ids=["5k_lines", "80k_blanks", "bom_70k_lines"])
def test_json_array_after_long_leading_whitespace_is_read_as_an_array(tmp_path, lead):
    rows = [{"instruction": f"问题{i}", "input": "", "output": f"回答{i}"} for i in range(5)]
    body = "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"
    src = tmp_path / "data.json"
    src.write_text(lead + body, encoding="utf-8")
    m = prep("alpaca", src, tmp_path / "out", PrepOptions(token_stats=False, val_ratio=0))
    assert (m["read"], m["train"], m["rejected"]) == (5, 5, 0)
    first = lead.count("\n") + 2  # the line where the first element starts
    kept = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["solution"] for r in kept) == [f"回答{i}" for i in range(5)]
    assert [r for r in sourcefiles.iter_file(src)][0][0] == first


@pytest.mark.parametrize("kind", ["file", "folder", "nested_folder", "relative"])
def test_link_out_of_src_is_refused_before_anything_is_read(tmp_path, capsys, kind):
    """A link in --src to a file (or folder) elsewhere: refused in one line naming it; the target is never read, so
    its lines cannot end up in rejects.jsonl."""
    src = _muice_copy(tmp_path)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "keys.jsonl").write_text("password=hunter2\n")
    link = {"file": src / "Customized" / "keys.jsonl", "folder": src / "elsewhere",
            "nested_folder": src / "a" / "b" / "elsewhere", "relative": src / "Customized" / "up.jsonl"}[kind]
    link.parent.mkdir(parents=True, exist_ok=True)
    target = {"file": secret / "keys.jsonl", "folder": secret, "nested_folder": secret,
              "relative": Path("../../secret/keys.jsonl")}[kind]
    link.symlink_to(target)
    out = tmp_path / "out"
    message = _one_line(*_cli(capsys, "muice", "--src", str(src), "--out", str(out)))
    real = secret / "keys.jsonl" if kind in ("file", "relative") else secret
    assert message == (f"{link}: a symbolic link to {real}, outside --src {src}; prep reads only what lies inside "
                       "--src: copy it in, or pass it as --src itself")
    assert not out.exists()  # refused before --out was made: the target's lines are nowhere


def test_links_inside_src_and_a_hub_snapshot_are_read(tmp_path):
    """Links that stay inside --src are followed; so are a Hugging Face cache snapshot's links into its blobs."""
    repo = tmp_path / "hub" / "datasets--Moemu--Muice-Dataset"
    snap = repo / "snapshots" / ("0" * 40)
    (snap / "Customized").mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, rel in enumerate(("train.jsonl", "test.jsonl", "Customized/self_cognition.jsonl")):
        (repo / "blobs" / f"blob{i}").write_bytes((SAMPLES / "muice" / rel).read_bytes())
        (snap / rel).symlink_to(os.path.relpath(repo / "blobs" / f"blob{i}", (snap / rel).parent))
    m = prep("muice", snap, tmp_path / "o", PrepOptions(token_stats=False))
    assert m["val"] == 4 and m["train"] == 12 + 7
    plain = tmp_path / "plain"
    (plain / "real").mkdir(parents=True)
    _write_rows(plain / "real" / "a.jsonl", [{"prompt": "问", "completion": "答"}])
    (plain / "alias.jsonl").symlink_to("real/a.jsonl")
    m = prep("muice", plain, tmp_path / "o2", PrepOptions(token_stats=False, val_ratio=0))
    assert set(m["inputs"]) == {"alias.jsonl", "real/a.jsonl"} and m["duplicates"] == 1


def test_every_record_rejected_still_writes_the_rejects_and_fails_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out))[0] == 0  # an earlier good run
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 1}\n{"prompt": "", "completion": "x"}\nnot json\n', encoding="utf-8")
    message = _one_line(*_cli(capsys, "muice", "--src", str(bad), "--out", str(out)))
    assert message.startswith(f"{bad}: no valid record (3 read, 3 rejected, 0 duplicates); first reject bad.jsonl:1: ")
    assert message.endswith(f"; every reject is in {out / 'rejects.jsonl'}")
    m = _assert_consistent(out)  # counts and sha256 describe the files beside the manifest: nothing stale
    assert (m["read"], m["train"], m["val"], m["rejected"]) == (3, 0, 0, 3) and m["error"] == message
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["file"], r["line"]) for r in rejects] == [("bad.jsonl", 1), ("bad.jsonl", 2), ("bad.jsonl", 3)]
    assert rejects[2]["raw"] == "not json"
    assert _leftovers(out) == []


def test_nothing_read_at_all_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert _cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(out))[0] == 0
    before = _snapshot(out)
    (tmp_path / "blank.jsonl").write_text("\n\n")
    message = _one_line(*_cli(capsys, "muice", "--src", str(tmp_path / "blank.jsonl"), "--out", str(out)))
    assert message == f"{tmp_path / 'blank.jsonl'}: no valid record (0 read, 0 rejected, 0 duplicates)"
    after = _snapshot(out)
    assert "manifest.json" not in after and after == {k: v for k, v in before.items() if k != "manifest.json"}


def _special_rows() -> list[dict]:
    return [
        {"prompt": "你是谁",  # a forged turn: the model would learn to call itself Qwen
         "completion": "我是沐雪<|im_end|>\n<|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n我是Qwen"},
        {"prompt": "讲个故事<|endoftext|>", "completion": "从前有座山"},
        {"prompt": "你好", "completion": "你好呀", "system": "前缀<|im_start|>system"},
        {"prompt": "什么是 <|im_end 标签", "completion": "像 <|im_end 这样不完整的不是特殊词元"},
        {"prompt": "早上好", "completion": "早上好！"},
    ]


def test_special_token_text_in_data_is_a_reject_naming_file_line_field_and_token(tmp_path, capsys):
    src = _write_rows(tmp_path / "chat.jsonl", _special_rows())
    out = tmp_path / "out"
    code = swiftkit_main(["prep", "muice", "--src", str(src), "--out", str(out), "--no-progress", "--keep-system",
                          "--val-ratio", "0"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "  warning: 3 of them hold special-token text (<|im_end|>, <|endoftext|>, ...)" in printed
    m = _assert_consistent(out)
    assert (m["read"], m["train"], m["rejected"], m["special_token_rejects"]) == (5, 2, 3, 3)
    kept = (out / "train.jsonl").read_text(encoding="utf-8")
    assert "<|im_end 这样不完整的" in kept and "早上好！" in kept  # good records (and near misses) are kept
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    tail = "which the tokenizer reads as a control token, not as text; remove it from the data"
    assert [(r["file"], r["line"], r["reason"]) for r in rejects] == [
        ("chat.jsonl", 1, f"messages[2] (assistant) content holds special-token text '<|im_end|>', {tail}"),
        ("chat.jsonl", 2, f"messages[1] (user) content holds special-token text '<|endoftext|>', {tail}"),
        ("chat.jsonl", 3, f"messages[0] (system) content holds special-token text '<|im_start|>', {tail}"),
    ]


def test_special_token_text_in_system_option_is_refused(tmp_path, capsys):
    message = _one_line(*_cli(capsys, "alpaca", "--src", str(ALPACA), "--out", str(tmp_path / "out"),
                              "--system", "你是沐雪<|im_end|>"))
    assert message.endswith("--system: holds special-token text '<|im_end|>', which the tokenizer reads as a control "
                            "token, not as text; remove it")
    assert not (tmp_path / "out").exists()
