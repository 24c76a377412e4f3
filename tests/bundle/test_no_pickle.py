"""Bundle loading never unpickles: no unpickling call in the source, and crafted model files refused.

The scan reads every module under src/layerops as an AST (imports and calls, with `import x as y`
aliases resolved); a finding names the file and line. The behavioural tests swap a bundle's
model.skops for one whose loading would run attacker code (it writes a marker file), rewriting as
much of the manifest as an attacker could, and check that `load_bundle` refuses it before anything
runs. Each payload is first shown to be live: skops, told to trust it, does write the marker.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skops.io as sio

import layerops
from layerops.bundle import bundle_digest, load_bundle, save_bundle
from layerops.errors import BundleError
from tests.bundle.builders import iris_bundle

SOURCE_ROOT = Path(layerops.__file__).parent
MODULES = sorted(SOURCE_ROOT.rglob("*.py"))

# ---------------------------------------------------------------- the source scan

_UNPICKLING_MODULES = frozenset({"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve"})
"""Modules whose loading is unpickling (shelve is a pickle database)."""
_UNPICKLING_CALLS = frozenset(
    {"joblib.load", "torch.load", "pandas.read_pickle", "pandas.io.pickle.read_pickle"}
)
"""Functions that unpickle whatever file they are given."""
_NUMPY_LOADS = frozenset({"numpy.load", "numpy.lib.npyio.load", "numpy.lib._npyio_impl.load"})
_SKOPS_LOADS = frozenset({"skops.io.load", "skops.io.loads"})
_DYNAMIC_IMPORTS = frozenset({"importlib.import_module", "__import__"})


class _Scanner(ast.NodeVisitor):
    """Collects `line: what` for every unpickling import or call in one module."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.findings: list[tuple[int, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.aliases[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level == 0:
            self._check_module(node, module)
        for alias in node.names:
            full = f"{module}.{alias.name}" if node.level == 0 else alias.name
            if full in _UNPICKLING_CALLS:
                self.findings.append((node.lineno, f"imports {full}"))
            self.aliases[alias.asname or alias.name] = full

    def visit_Call(self, node: ast.Call) -> None:
        name = self._dotted(node.func)
        if name is not None:
            self._check_call(node, name)
        self.generic_visit(node)

    def _check_module(self, node: ast.stmt, module: str) -> None:
        if module.split(".")[0] in _UNPICKLING_MODULES:
            self.findings.append((node.lineno, f"imports {module}"))

    def _check_call(self, node: ast.Call, name: str) -> None:
        keywords = {keyword.arg: keyword.value for keyword in node.keywords if keyword.arg}
        if name in _UNPICKLING_CALLS or name.rsplit(".", 1)[-1] == "read_pickle":
            self.findings.append((node.lineno, f"calls {name}"))
        elif name in _NUMPY_LOADS and not _is_false(keywords.get("allow_pickle")):
            self.findings.append((node.lineno, f"calls {name} with allow_pickle"))
        elif name in _SKOPS_LOADS and _is_true(keywords.get("trusted")):
            self.findings.append((node.lineno, f"calls {name} with trusted=True"))
        elif name in _DYNAMIC_IMPORTS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if first.value.split(".")[0] in _UNPICKLING_MODULES:
                    self.findings.append((node.lineno, f"imports {first.value} dynamically"))

    def _dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None


def _is_false(node: ast.expr | None) -> bool:
    """True when the keyword is absent or the literal False (numpy's safe default)."""
    return node is None or (isinstance(node, ast.Constant) and node.value is False)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unpickling_sites(source: str) -> list[tuple[int, str]]:
    """(line, what) for every unpickling import or call in `source`."""
    scanner = _Scanner()
    scanner.visit(ast.parse(source))
    return sorted(scanner.findings)


def _relative(path: Path) -> str:
    return str(path.relative_to(SOURCE_ROOT.parent.parent))


def test_the_scan_covers_the_package() -> None:
    names = {_relative(path) for path in MODULES}
    assert "src/layerops/bundle/store.py" in names
    assert len(names) > 20


@pytest.mark.parametrize("module", MODULES, ids=_relative)
def test_no_module_unpickles(module: Path) -> None:
    sites = unpickling_sites(module.read_text(encoding="utf-8"))

    assert not sites, "\n".join(f"{_relative(module)}:{line}: {what}" for line, what in sites)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import pickle", "imports pickle"),
        ("import cPickle as p", "imports cPickle"),
        ("from _pickle import loads", "imports _pickle"),
        ("import dill.settings", "imports dill.settings"),
        ("from cloudpickle import load", "imports cloudpickle"),
        ("import shelve", "imports shelve"),
        ("from joblib import load", "imports joblib.load"),
        ("import joblib\njoblib.load('m')", "calls joblib.load"),
        ("from joblib import load as jl\njl('m')", "imports joblib.load; calls joblib.load"),
        ("import torch\ntorch.load('w')", "calls torch.load"),
        ("import pandas as pd\npd.read_pickle('f')", "calls pandas.read_pickle"),
        ("import numpy as np\nnp.load('a', allow_pickle=True)", "calls numpy.load with allow_pickle"),
        ("from numpy import load\nload('a', allow_pickle=flag)", "calls numpy.load with allow_pickle"),
        ("import skops.io as sio\nsio.load('m', trusted=True)", "calls skops.io.load with trusted=True"),
        ("import importlib\nimportlib.import_module('pickle')", "imports pickle dynamically"),
        ("def f():\n    import pickle\n    return pickle", "imports pickle"),
    ],
)
def test_the_scan_finds_each_unpickling_form(source: str, expected: str) -> None:
    assert [what for _, what in unpickling_sites(source)] == expected.split("; ")


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np\nnp.load('a.npy')",
        "import numpy as np\nnp.load('a.npy', allow_pickle=False)",
        "from joblib import Parallel, delayed",
        "import skops.io as sio\nsio.load('m', trusted=['sklearn.tree._tree.Tree'])",
        "import json\njson.loads('{}')",
        "frame.to_pickle('out')  # writing is not loading",
    ],
)
def test_the_scan_passes_safe_forms(source: str) -> None:
    assert unpickling_sites(source) == []


# ---------------------------------------------------------------- crafted model files


class _Trap:
    """A type a crafted model file names: restoring it (skops or pickle) writes its marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("executed")
        self.__dict__.update(state)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_spring, (self.marker,))


def _spring(marker: str) -> _Trap:
    Path(marker).write_text("executed")
    return _Trap.__new__(_Trap)


TRAP_TYPE = f"{__name__}._Trap"


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """The file a payload writes if any of its code runs; every test asserts on it."""
    return tmp_path / "payload-ran"


@pytest.fixture
def saved_iris(iris_frame: pd.DataFrame, tmp_path: Path) -> Path:
    """An honest iris forest bundle in tmp_path/iris."""
    folder = tmp_path / "iris"
    save_bundle(iris_bundle(iris_frame, forest=True), folder)
    return folder


def _trap_model(iris_frame: pd.DataFrame, marker: Path) -> bytes:
    """A skops file of the honest pipeline with one extra step: a `_Trap`."""
    model = iris_bundle(iris_frame, forest=True).model
    model.steps.append(("hook", _Trap(str(marker))))
    return bytes(sio.dumps(model))


def _crafted_call(module: str, function: str, args: tuple[Any, ...]) -> bytes:
    """A skops file whose loading calls `module.function(*args)` (skops' reduce-style node)."""
    honest = zipfile.ZipFile(io.BytesIO(sio.dumps(args)))
    schema = json.loads(honest.read("schema.json"))
    header = {key: schema.pop(key) for key in ("protocol", "_skops_version")}
    payload = {
        "__class__": function,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": schema,
        "__id__": 1,
        **header,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as crafted:
        for name in honest.namelist():
            crafted.writestr(name, json.dumps(payload) if name == "schema.json" else honest.read(name))
    return out.getvalue()


def _file_writer(marker: Path) -> bytes:
    """`numpy.savetxt(marker, ..., header=<any text>)`: an arbitrary file write from inside numpy."""
    return _crafted_call("numpy", "savetxt", (str(marker), [1.0], "%s", " ", "\n", "attacker text", "", ""))


def _swap_model(folder: Path, data: bytes, *, digest: bool, trust: list[str] | None = None) -> None:
    """Replace model.skops; optionally re-pin it in the manifest and extend its trusted types."""
    (folder / "model.skops").write_bytes(data)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    if digest:
        manifest["files"]["model.skops"] = hashlib.sha256(data).hexdigest()
    if trust:
        manifest["trusted_types"] = sorted({*manifest["trusted_types"], *trust})
    path.write_text(json.dumps(manifest))


def test_the_trap_payload_is_live(iris_frame: pd.DataFrame, marker: Path) -> None:
    data = _trap_model(iris_frame, marker)
    assert TRAP_TYPE in sio.get_untrusted_types(data=data)
    assert not marker.exists()  # listing a file's types runs nothing

    sio.loads(data, trusted=sio.get_untrusted_types(data=data))

    assert marker.exists()


def test_the_file_writer_payload_is_live(marker: Path) -> None:
    data = _file_writer(marker)
    assert sio.get_untrusted_types(data=data) == ["numpy.savetxt"]

    sio.loads(data, trusted=["numpy.savetxt"])

    assert "attacker text" in marker.read_text()


def test_a_swapped_model_file_is_refused_by_its_manifest_digest(
    saved_iris: Path, iris_frame: pd.DataFrame, marker: Path
) -> None:
    _swap_model(saved_iris, _trap_model(iris_frame, marker), digest=False)

    with pytest.raises(BundleError, match=r"model\.skops does not match its SHA-256"):
        load_bundle(saved_iris)
    assert not marker.exists()


def test_a_re_pinned_model_file_is_refused_for_its_untrusted_type(
    saved_iris: Path, iris_frame: pd.DataFrame, marker: Path
) -> None:
    _swap_model(saved_iris, _trap_model(iris_frame, marker), digest=True)

    with pytest.raises(BundleError, match=rf"needs types manifest\.json does not trust: .*{TRAP_TYPE}"):
        load_bundle(saved_iris)
    assert not marker.exists()


def test_a_manifest_trusting_the_crafted_type_is_refused_by_the_type_policy(
    saved_iris: Path, iris_frame: pd.DataFrame, marker: Path
) -> None:
    _swap_model(saved_iris, _trap_model(iris_frame, marker), digest=True, trust=[TRAP_TYPE])

    with pytest.raises(BundleError, match=rf"trusts types outside the allowed libraries: {TRAP_TYPE}"):
        load_bundle(saved_iris)
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["trap", "file_writer"])
def test_the_registry_digest_refuses_any_rewritten_bundle(
    payload: str, saved_iris: Path, iris_frame: pd.DataFrame, marker: Path
) -> None:
    """The strongest guarantee: with the digest the registry pinned, nothing of a rewrite runs."""
    registered = bundle_digest(saved_iris)
    data = _trap_model(iris_frame, marker) if payload == "trap" else _file_writer(marker)
    _swap_model(saved_iris, data, digest=True, trust=sio.get_untrusted_types(data=data))

    with pytest.raises(BundleError, match="changed after registration"):
        load_bundle(saved_iris, expected_digest=registered)
    assert not marker.exists()


def test_a_manifest_trusting_a_callable_of_an_allowed_library_is_refused(
    saved_iris: Path, marker: Path
) -> None:
    _swap_model(saved_iris, _file_writer(marker), digest=True, trust=["numpy.savetxt"])

    try:
        with pytest.raises(BundleError):
            load_bundle(saved_iris)
    finally:
        assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("numpy.dtype", True),
        ("sklearn.tree._tree.Tree", True),
        ("lightgbm.basic.Booster", True),
        ("xgboost.core.Booster", True),
        ("collections.OrderedDict", True),
        ("numpy.savetxt", False),  # a function that writes a file
        ("scipy.io.savemat", False),
        ("numpy.memmap", False),  # a class whose constructor opens a file
        ("numpy.lib.npyio.NpzFile", False),
        ("sklearn.no_such_thing", False),
    ],
)
def test_the_type_policy_trusts_classes_of_allowed_libraries_only(name: str, allowed: bool) -> None:
    from layerops.bundle.store import _allowed_type

    assert _allowed_type(name) is allowed
