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
