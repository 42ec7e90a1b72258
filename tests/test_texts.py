"""What swiftkit tells a person, as text: the prep summary says when it replaced records' own system prompts, every
command's --help renders as written, JSON written for people keeps Chinese readable, and the smoke's duration is
stated in one place."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from datasets_prep.atomic import json_text
from swiftkit.cli import ROUTES, command_parser, module_name
from swiftkit.cli import main as swiftkit_main

ROOT = Path(__file__).resolve().parents[1]


# --- the prep summary ---------------------------------------------------------------------------------------------

@pytest.fixture()
def own_systems(tmp_path) -> Path:
    """Three chat records, two with their own system prompt."""
    rows = [{"system": "你是小明", "prompt": "你好", "completion": "你好呀"},
            {"prompt": "再见", "completion": "拜拜"},
            {"system": "你是小红", "prompt": "早", "completion": "早上好"}]
    src = tmp_path / "chat.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return src


def prep_out(capsys, src: Path, out: Path, *extra: str) -> str:
    assert swiftkit_main(["prep", "muice", "--src", str(src), "--out", str(out), "--no-progress", "--val-ratio", "0",
                          *extra]) == 0
    return capsys.readouterr().out


def test_prep_summary_counts_replaced_system_prompts(capsys, tmp_path, own_systems):
    out = prep_out(capsys, own_systems, tmp_path / "a")
    assert ("  2 of 3 records read had their own system prompt replaced (by the source's default; --keep-system "
            "keeps each record's own)") in out.splitlines()
    out = prep_out(capsys, own_systems, tmp_path / "b", "--system", "你是小助手")
    assert "  2 of 3 records read had their own system prompt replaced (by --system;" in out
    out = prep_out(capsys, own_systems, tmp_path / "c", "--keep-system")
    assert "system prompt replaced" not in out and out.startswith("muice: read 3, train 3")


# --- help texts ---------------------------------------------------------------------------------------------------

def _docstring_source(path: Path) -> tuple[str, str]:
    """(the module docstring as Python reads it, the text between its quotes as written in the file)."""
    source = path.read_text(encoding="utf-8")
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant), f"{path}: no module docstring"
    written = ast.get_source_segment(source, node.value)
    quote = written[:3]
    assert quote in ('"""', "'''") and written.endswith(quote), f"{path}: docstring is not a plain triple-quoted string"
    return node.value.value, written[3:-3]


@pytest.mark.parametrize("command", list(ROUTES))
def test_every_help_renders_as_written(command):
    """A command's docstring is its --help: `\\r\\n` written in prep's made literal CR/LF characters (the help came
    out garbled) and a line ending in `\\` in plan's joined two example lines. The only escape a help may hold is
    `\\\\` (one backslash shown), and the rendered help holds no control character but the newline."""
    read, written = _docstring_source(ROOT / (module_name(command).replace(".", "/") + ".py"))
    assert read == written.replace("\\\\", "\\"), f"{command}: an escape in the docstring changes what --help shows"
    text = command_parser(command)[1].format_help()
    bad = sorted({f"U+{ord(c):04X}" for c in text if (ord(c) < 32 and c != "\n") or ord(c) == 127})
    assert not bad, f"swiftkit {command} --help holds control characters {bad}"
    assert text.startswith(f"usage: swiftkit {command}")


# --- JSON for people ----------------------------------------------------------------------------------------------

MACHINE_ONLY = {
    ("swiftkit/deploy/serve.py", "json.dumps(payload)"): "an HTTP request body to the server, not a file",
    ("datasets_prep/pipeline.py", "json.dumps(c)"): "score choices: numbers, ASCII either way",
    ("datasets_prep/scorefield.py", "json.dumps(value)"): "a bool or None in an error: true/false/null",
    ("swiftkit/core/proc.py", "json.dumps(value)"): "the escaped form of a secret, masked wherever a log holds it",
    ("swiftkit/run/persona.py", "json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, "
     "sort_keys=sort_keys)"): "the chat template's tojson filter: the caller's choice, as Jinja's",
}
"""json.dump(s) calls that may leave ensure_ascii at its default, and why; every other call keeps Chinese as is."""


def test_json_written_for_people_keeps_chinese():
    assert "沐雪" in json_text({"answer": "我是沐雪"}) and "\\u" not in json_text({"answer": "我是沐雪"})
    found = {}
    for path in sorted([*ROOT.glob("swiftkit/**/*.py"), *ROOT.glob("datasets_prep/**/*.py")]):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "json"
                    and node.func.attr in ("dump", "dumps")):
                keep = any(k.arg == "ensure_ascii" and isinstance(k.value, ast.Constant) and k.value.value is False
                           for k in node.keywords)
                if not keep:
                    found[(str(path.relative_to(ROOT)), ast.get_source_segment(source, node))] = node.lineno
    unexplained = {k: line for k, line in found.items() if k not in MACHINE_ONLY}
    assert not unexplained, f"json.dump(s) without ensure_ascii=False (\\u escapes for Chinese): {unexplained}"


# --- the smoke's duration -----------------------------------------------------------------------------------------

DURATION = re.compile(r"(\d+(\.\d+)?|\ba)\s*min(ute)?s?\b", re.I)
SMOKE_FILES = ("scripts/smoke_sweep.py", "swiftkit/cli/commands/smoke.py", "swiftkit/dev/smoke.py",
               "recipes/smoke_tiny.yaml")
"""Files about the smoke run, which once stated its duration each their own way ("about a minute", "~2.5 min")."""


def test_the_smoke_duration_is_stated_once_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = [line for line in readme.splitlines() if "smoke" in line and DURATION.search(line)]
    assert len(stated) == 1 and "`make smoke` (about" in stated[0], stated
    for name in SMOKE_FILES:
        hits = [line.strip() for line in (ROOT / name).read_text(encoding="utf-8").splitlines() if DURATION.search(line)]
        assert not hits, f"{name} states the smoke's duration again: {hits}"
    makefile = [line for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
                if "smoke" in line and DURATION.search(line)]
    assert not makefile, makefile
