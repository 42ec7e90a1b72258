"""The package layout's promises: swiftkit builds on datasets_prep, never the reverse."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(path: Path) -> set[str]:
    """Top-level package names a module imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_datasets_prep_never_imports_swiftkit():
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "datasets_prep").rglob("*.py"))
                 if "swiftkit" in imported_packages(p)]
    assert offenders == []


def test_the_scan_sees_a_function_level_import(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from swiftkit.errors import SwiftkitError\n", encoding="utf-8")
    assert "swiftkit" in imported_packages(module)


# ---- one CLI convention (swiftkit/cli.py's docstring) ----

PROCESS_ENTRY_POINTS = {"swiftkit/worker.py", "swiftkit/deploy_child.py", "swiftkit/llamacpp.py"}
"""Modules swiftkit starts as child processes (``python -m ...``): they read their own argv, and are no commands."""


def cli_violations(path: Path) -> list[str]:
    """What a library module may not do: import argparse, or read ``sys.argv``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            found.append(f"{node.lineno}: imports argparse")
        elif isinstance(node, ast.ImportFrom) and node.module == "argparse":
            found.append(f"{node.lineno}: imports from argparse")
        elif isinstance(node, ast.Attribute) and node.attr == "argv" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            found.append(f"{node.lineno}: reads sys.argv")
        elif isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "argv" for a in node.names):
            found.append(f"{node.lineno}: imports sys.argv")
    return found


def test_library_modules_parse_no_command_line():
    offenders = []
    for package in ("swiftkit", "datasets_prep"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if path.name.startswith("cmd_") or rel in {"swiftkit/cli.py", *PROCESS_ENTRY_POINTS}:
                continue
            offenders += [f"{rel}:{v}" for v in cli_violations(path)]
    assert offenders == []


def test_the_cli_scan_sees_argparse_and_argv(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("import sys\ndef f():\n    from argparse import ArgumentParser\n    return sys.argv[1:]\n",
                      encoding="utf-8")
    assert cli_violations(module) == ["3: imports from argparse", "4: reads sys.argv"]


def test_every_command_is_a_cmd_module_and_every_cmd_module_a_command():
    from swiftkit.cli import ROUTES, module_name

    modules = {module_name(name) for name in ROUTES}
    on_disk = {f"swiftkit.{p.stem}" for p in (ROOT / "swiftkit").glob("cmd_*.py")}
    assert modules == on_disk
    assert module_name("tiny-model") == "swiftkit.cmd_tiny_model"


def test_every_command_builds_its_parser_without_heavy_imports():
    """Each command module has a docstring (its --help), add_arguments and run, and importing it plus building its
    parser loads no torch / ms-swift / transformers (they are imported inside run)."""
    import subprocess
    import sys

    code = (
        "import argparse, importlib, json, sys\n"
        "from swiftkit.cli import ROUTES, module_name\n"
        "problems = []\n"
        "for name in ROUTES:\n"
        "    module = importlib.import_module(module_name(name))\n"
        "    if not (module.__doc__ or '').strip() or not callable(getattr(module, 'run', None)):\n"
        "        problems.append(f'{name}: no docstring or no run')\n"
        "    parser = argparse.ArgumentParser(prog=name)\n"
        "    module.add_arguments(parser)\n"
        "    parser.format_help()\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'swift', 'transformers', 'deepspeed'})\n"
        "print(json.dumps({'problems': problems, 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip().splitlines()[-1] == '{"problems": [], "heavy": []}'
