"""Size facts for a refactoring issue's proof, measured with the stdlib ``ast`` module only.

The issue asks to show that no module is over 400 lines, that the median function is at most
10 lines, and that ``create_app`` is at most 40 lines. This script measures exactly that:

* a module's size is its physical line count, as ``wc -l`` reports it (newline characters);
* a function's size is every ``def``/``async def`` (methods and nested ones included) counted
  from its ``def`` line to its ``end_lineno``, so decorators are left out and a nested function
  counts both on its own and inside its parent.

Usage, from the repository root: ``uv run python tools/code_stats.py [src/layerops]``;
``--function NAME`` prints each match's length; ``--check`` exits 1 when a limit fails.
"""

import argparse
import ast
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_MEDIAN_FUNCTION_LINES = 10.0
MAX_CREATE_APP_LINES = 40
TOP = 10


@dataclass(frozen=True)
class Module:
    """One ``.py`` file and its physical line count."""

    path: str
    lines: int


@dataclass(frozen=True)
class Function:
    """One ``def`` or ``async def``: where it starts, its name and its length in lines."""

    path: str
    line: int
    name: str
    lines: int


@dataclass(frozen=True)
class Summary:
    """Count, median, p90 (nearest rank) and max of a list of line counts; zeros when empty."""

    count: int
    median: float
    p90: int
    max: int


def summarize(values: Sequence[int]) -> Summary:
    """Summarize line counts; p90 is the nearest-rank percentile, so it is always a real value."""
    if not values:
        return Summary(0, 0.0, 0, 0)
    ordered = sorted(values)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
    return Summary(len(ordered), float(statistics.median(ordered)), p90, ordered[-1])


def collect(root: Path) -> tuple[list[Module], list[Function]]:
    """Every module under ``root`` and every function in them, in path then line order."""
    modules: list[Module] = []
    functions: list[Function] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        modules.append(Module(str(path), text.count("\n")))
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                end = node.end_lineno or node.lineno
                functions.append(Function(str(path), node.lineno, node.name, end - node.lineno + 1))
    functions.sort(key=lambda f: (f.path, f.line))
    return modules, functions


def largest_modules(modules: Sequence[Module], limit: int) -> list[Module]:
    """Modules over ``limit`` lines, largest first, at most ``TOP`` of them."""
    over = [m for m in modules if m.lines > limit]
    return sorted(over, key=lambda m: (-m.lines, m.path))[:TOP]


def largest_functions(functions: Sequence[Function]) -> list[Function]:
    """The ``TOP`` longest functions, longest first."""
    return sorted(functions, key=lambda f: (-f.lines, f.path, f.line))[:TOP]


def failures(
    modules: Sequence[Module], functions: Sequence[Function], max_module: int, max_median: float, max_app: int
) -> list[str]:
    """One message per limit that fails; an empty list means the proof holds."""
    over = sorted((m for m in modules if m.lines > max_module), key=lambda m: -m.lines)
    failed = [f"module {m.path} has {m.lines} lines > {max_module}" for m in over]
    median = summarize([f.lines for f in functions]).median
    if median > max_median:
        failed.append(f"median function is {median:g} lines > {max_median:g}")
    for f in functions:
        if f.name == "create_app" and f.lines > max_app:
            failed.append(f"create_app at {f.path}:{f.line} has {f.lines} lines > {max_app}")
    return failed


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("root", nargs="?", type=Path, default=Path("src/layerops"))
    parser.add_argument("--function", metavar="NAME", help="print the length of each function NAME")
    parser.add_argument("--check", action="store_true", help="exit 1 if a limit fails")
    parser.add_argument("--max-module", type=int, default=MAX_MODULE_LINES)
    parser.add_argument("--max-median-function", type=float, default=MAX_MEDIAN_FUNCTION_LINES)
    parser.add_argument("--max-create-app", type=int, default=MAX_CREATE_APP_LINES)
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a directory")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Print the size facts for ``root``; with ``--check``, return 1 if a limit fails."""
    args = _parse(argv)
    modules, functions = collect(args.root)
    mods = summarize([m.lines for m in modules])
    print(f"modules: {mods.count}  median {mods.median:g}  max {mods.max} lines")
    print(f"modules over {args.max_module} lines (largest first, top {TOP}):")
    for m in largest_modules(modules, args.max_module):
        print(f"  {m.lines:6d}  {m.path}")
    funcs = summarize([f.lines for f in functions])
    print(f"functions: {funcs.count}  median {funcs.median:g}  p90 {funcs.p90}  max {funcs.max} lines")
    print(f"largest functions (top {TOP}):")
    for f in largest_functions(functions):
        print(f"  {f.path}:{f.line} {f.name} {f.lines}")
    if args.function:
        matches = [f for f in functions if f.name == args.function]
        for f in matches:
            print(f"{args.function}: {f.path}:{f.line} {f.lines} lines")
        if not matches:
            print(f"{args.function}: no such function")
    if not args.check:
        return 0
    failed = failures(modules, functions, args.max_module, args.max_median_function, args.max_create_app)
    for message in failed:
        print(f"FAIL: {message}")
    if not failed:
        print("OK: every limit holds")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
