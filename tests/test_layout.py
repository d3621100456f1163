"""Room sizes in bnlab/: no module over 500 lines, no function over 80 (issue 20).

Lengths come from the source's ast: a module's length is its line count, a
function's (methods and nested functions included) runs from its ``def`` line
to its last line, decorators left out. The longest of each is printed on every
run, so the report shows how close the code is to the limits.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bnlab"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def modules(package: Path = PACKAGE) -> list[tuple[str, int, ast.Module]]:
    """(path relative to the package's parent, line count, parsed tree) of every module in it."""
    out = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        out.append((str(path.relative_to(package.parent)), len(source.splitlines()), ast.parse(source)))
    return out


def _defs(node: ast.AST, prefix: str = ""):
    """(qualified name, def node) of every function under node, methods and nested ones included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{child.name}", child
            yield from _defs(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _defs(child, f"{prefix}{child.name}.")
        else:
            yield from _defs(child, prefix)


def functions(package: Path = PACKAGE) -> list[tuple[str, int]]:
    """('path:line qualified.name', length in lines) of every function and method in the package."""
    return [(f"{rel}:{node.lineno} {name}", node.end_lineno - node.lineno + 1)
            for rel, _, tree in modules(package) for name, node in _defs(tree)]


@pytest.fixture(scope="module")
def sizes():
    mods = sorted(((rel, n) for rel, n, _ in modules()), key=lambda m: -m[1])
    funcs = sorted(functions(), key=lambda f: -f[1])
    return mods, funcs


def test_report_longest_module_and_function(sizes, capsys):
    mods, funcs = sizes
    assert mods and funcs, "no module or function found under bnlab/"
    with capsys.disabled():
        print(f"\nlongest module:   {mods[0][0]} ({mods[0][1]} lines; limit {MAX_MODULE_LINES})")
        print(f"longest function: {funcs[0][0]} ({funcs[0][1]} lines; limit {MAX_FUNCTION_LINES})")


def test_no_module_over_the_limit(sizes):
    over = [f"  {rel}: {n} lines" for rel, n in sizes[0] if n > MAX_MODULE_LINES]
    assert not over, f"{len(over)} module(s) over {MAX_MODULE_LINES} lines:\n" + "\n".join(over)


def test_no_function_over_the_limit(sizes):
    over = [f"  {where}: {n} lines" for where, n in sizes[1] if n > MAX_FUNCTION_LINES]
    assert not over, f"{len(over)} function(s) over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(over)


def test_the_scan_measures_methods_nested_functions_and_modules(tmp_path):
    """The scan's own check: sub-packages, methods and nested functions, each with its own length."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "mod.py").write_text(
        "import os\n\n\nclass A:\n    @staticmethod\n    def m():\n        def inner():\n"
        "            return 1\n\n        return inner\n")
    assert [(rel, n) for rel, n, _ in modules(pkg)] == [("pkg/__init__.py", 0), ("pkg/sub/mod.py", 10)]
    assert sorted(functions(pkg)) == [("pkg/sub/mod.py:6 A.m", 5), ("pkg/sub/mod.py:7 A.m.inner", 2)]
