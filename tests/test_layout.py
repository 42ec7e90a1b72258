"""The package layout's promises (ARCHITECTURE.md): datasets_prep is the base and imports no swiftkit; inside
swiftkit each folder imports only the folders below it; the import graph has no cycle; commands live in cli/."""
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
    module.write_text("def f():\n    from swiftkit.core.errors import SwiftkitError\n", encoding="utf-8")
    assert "swiftkit" in imported_packages(module)


# ---- one rule per folder: the dependency direction ----

LAYERS = ("core", "stack", "run", "train", "deploy", "evaluate", "dev", "cli")
"""swiftkit's folders, bottom to top: a module may import its own folder and the ones before it, never after."""


def module_name_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def swiftkit_imports(path: Path) -> set[str]:
    """The swiftkit modules a file imports (module level or inside functions), as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("swiftkit"):
            found.update(f"{node.module}.{a.name}" for a in node.names)
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("swiftkit"))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name_of(p): p for p in (ROOT / "swiftkit").rglob("*.py")}
    return {name: {m for m in swiftkit_imports(path) if m in modules and m != name} for name, path in modules.items()}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in sorted(graph.items()):
        mine = layer_of(module)
        for dep in sorted(deps):
            theirs = layer_of(dep)
            if mine and theirs and LAYERS.index(theirs) > LAYERS.index(mine):
                bad.append(f"{module} imports {dep} ({mine} is below {theirs})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_lives_in_a_layer_folder():
    loose = [m for m in import_graph() if m.count(".") == 1 and layer_of(m) is None]
    assert loose == []  # swiftkit/__init__.py only: no flat modules beside the folders


def test_each_folder_imports_only_the_folders_below_it():
    assert layer_violations(import_graph()) == []


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_layer_and_cycle_rules_can_fail():
    graph = {"swiftkit.core.a": {"swiftkit.cli.b"}, "swiftkit.cli.b": {"swiftkit.core.a"}}
    assert layer_violations(graph) == ["swiftkit.core.a imports swiftkit.cli.b (core is below cli)"]
    assert cycles(graph) == [["swiftkit.cli.b", "swiftkit.core.a"]]


# ---- one CLI convention (swiftkit/cli/__init__.py's docstring) ----

PROCESS_ENTRY_POINTS = {"swiftkit/train/worker.py", "swiftkit/deploy/deploy_child.py", "swiftkit/deploy/llamacpp.py",
                        "swiftkit/stack/swift_child.py"}
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
            if rel.startswith("swiftkit/cli/") or rel in PROCESS_ENTRY_POINTS:
                continue
            offenders += [f"{rel}:{v}" for v in cli_violations(path)]
    assert offenders == []


def test_the_cli_scan_sees_argparse_and_argv(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("import sys\ndef f():\n    from argparse import ArgumentParser\n    return sys.argv[1:]\n",
                      encoding="utf-8")
    assert cli_violations(module) == ["3: imports from argparse", "4: reads sys.argv"]


def test_every_command_is_a_module_of_cli_commands_and_every_such_module_a_command():
    from swiftkit.cli import ROUTES, module_name

    modules = {module_name(name) for name in ROUTES}
    on_disk = {f"swiftkit.cli.commands.{p.stem}" for p in (ROOT / "swiftkit" / "cli" / "commands").glob("*.py")
               if p.stem != "__init__"}
    assert modules == on_disk
    assert module_name("tiny-model") == "swiftkit.cli.commands.tiny_model"


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


SEAM = "swiftkit/stack/dialect.py"
"""The one module that imports ms-swift (``swift.*``): every other touch goes through its ``swift_api`` table."""


def swift_imports(path: Path) -> list[str]:
    """``line: module`` of every import of ms-swift (``swift`` or ``swift.*``) in ``path``, function level included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        found += [f"{node.lineno}: {n}" for n in names if n == "swift" or n.startswith("swift.")]
    return found


def test_only_the_dialect_imports_ms_swift():
    offenders = []
    for folder in ("swiftkit", "datasets_prep"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != SEAM:
                offenders += [f"{rel}:{hit}" for hit in swift_imports(path)]
    assert offenders == []


def test_the_seam_scan_can_fail(tmp_path: Path):
    probe = tmp_path / "m.py"
    probe.write_text("def f():\n    from swift.llm import sft_main\n    import swift\n    import swiftkit\n"
                     "    from swiftkit.stack import dialect\n")
    assert swift_imports(probe) == ["2: swift.llm", "3: swift"]
