"""tools/code_stats.py on hand-written modules whose sizes are known in advance."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tools" / "code_stats.py"
    spec = importlib.util.spec_from_file_location("code_stats", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


code_stats = _load()

SMALL = "def small():\n    x = 1\n    return x\n"  # a 3-line function in a 3-line module
NESTED = (  # a method of 4 lines holding a nested def of 2, in a 5-line module
    "class Box:\n"
    "    async def outer(self):\n"
    "        def inner():\n"
    "            return 1\n"
    "        return inner()\n"
)
CREATE_APP = "def create_app():\n" + "".join(f"    x{i} = {i}\n" for i in range(48)) + "    return x0\n"
HUGE = "".join(f"value_{i} = {i}\n" for i in range(450))  # a 450-line module with no function


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A folder with a 3-, 5-, 50- and 450-line module and four functions of 3, 4, 2 and 50 lines."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "small.py").write_text(SMALL)
    (root / "sub" / "nested.py").write_text(NESTED)
    (root / "app.py").write_text(CREATE_APP)
    (root / "huge.py").write_text(HUGE)
    return root


def test_collect_counts_physical_module_lines(package: Path) -> None:
    modules, _ = code_stats.collect(package)
    sizes = {Path(m.path).name: m.lines for m in modules}
    assert sizes == {"small.py": 3, "nested.py": 5, "app.py": 50, "huge.py": 450}
    assert [Path(m.path).name for m in code_stats.largest_modules(modules, 400)] == ["huge.py"]


def test_collect_counts_every_def_including_methods_and_nested(package: Path) -> None:
    _, functions = code_stats.collect(package)
    found = {(f.name, f.line, f.lines) for f in functions}
    assert found == {("small", 1, 3), ("outer", 2, 4), ("inner", 3, 2), ("create_app", 1, 50)}
    assert [f.name for f in code_stats.largest_functions(functions)][:2] == ["create_app", "outer"]


def test_summarize() -> None:
    assert code_stats.summarize([3, 4, 2, 50]) == code_stats.Summary(4, 3.5, 50, 50)
    assert code_stats.summarize(list(range(1, 11))) == code_stats.Summary(10, 5.5, 9, 10)
    assert code_stats.summarize([]) == code_stats.Summary(0, 0.0, 0, 0)


def test_main_prints_the_facts(package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert code_stats.main([str(package), "--function", "create_app"]) == 0
    out = capsys.readouterr().out
    assert "modules: 4  median 27.5  max 450 lines" in out
    assert f"     450  {package / 'huge.py'}" in out
    assert "functions: 4  median 3.5  p90 50  max 50 lines" in out
    assert f"  {package / 'sub' / 'nested.py'}:2 outer 4" in out
    assert f"create_app: {package / 'app.py'}:1 50 lines" in out


def test_check_fails_naming_each_limit(package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert code_stats.main([str(package), "--check", "--max-median-function", "3"]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert failed == [
        f"FAIL: module {package / 'huge.py'} has 450 lines > 400",
        "FAIL: median function is 3.5 lines > 3",
        f"FAIL: create_app at {package / 'app.py'}:1 has 50 lines > 40",
    ]


def test_check_passes_within_the_limits(package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(package), "--check", "--max-module", "450", "--max-create-app", "50"]
    assert code_stats.main(argv) == 0
    assert "OK: every limit holds" in capsys.readouterr().out


def test_check_passes_on_small_modules_with_default_limits(tmp_path: Path) -> None:
    (tmp_path / "small.py").write_text(SMALL)
    (tmp_path / "nested.py").write_text(NESTED)
    assert code_stats.main([str(tmp_path), "--check"]) == 0


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        code_stats.main([str(tmp_path / "absent"), "--check"])
    assert exc.value.code == 2
