"""`layerops.api.releases`: the promotion gate and gated promotion, for notebooks and the CLI.

    from layerops.api import releases
    report = releases.gate("iris", version=3)   # against production, on v3's held-out test rows
    for line in report.lines():                  # both models, the metric difference, each check
        print(line)
    promotion = releases.promote("iris", version=3, eval_data="fresh.csv")
    promotion.change                              # the alias move, or None when the gate refused

A thin shell over `layerops.releases.promotion`: it opens the repository (never creating one),
reads the evaluation file, and resolves `version=None` to the newest version.
`layerops.models.promote` stays a plain alias move; `layerops models promote` gates.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from layerops.api import _context
from layerops.errors import DataError, LayeropsError
from layerops.releases.gate import GatePolicy, GateReport
from layerops.releases.promotion import Promotion, gate_against
from layerops.releases.promotion import promote as _promote
from layerops.repository.api import ModelRepository

__all__ = ["GatePolicy", "GateReport", "Promotion", "gate", "promote"]

EvalData = str | Path | pd.DataFrame | None
"""Evaluation rows: a CSV or Parquet file, a DataFrame, or None (the challenger's held-out rows)."""


def gate(
    name: str,
    *,
    version: int | None = None,
    alias: str = "production",
    eval_data: EvalData = None,
    policy: GatePolicy | None = None,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> GateReport:
    """The promotion gate's report on `version` (default: the newest) against the version `alias`
    points to; nothing is changed or recorded. `eval_data` must hold the target column."""
    repository = _context.repository(home, tracking_uri, create=False)
    data, source = read_eval_data(eval_data)
    number = _version(repository, name, version)
    return gate_against(repository, name, number, alias=alias, data=data, source=source, policy=policy)


def promote(  # noqa: PLR0913 - keyword-only options of a public function
    name: str,
    *,
    version: int | None = None,
    alias: str = "production",
    force: bool = False,
    reason: str = "",
    eval_data: EvalData = None,
    policy: GatePolicy | None = None,
    gate: bool = True,
    against: str | None = None,
    home: str | Path | None = None,
    tracking_uri: str | None = None,
) -> Promotion:
    """Point `alias` at `version` (default: the newest) if it passes the gate against the version
    `against` (default: `alias`) points to. Refused: nothing moves, a `gate_failed` event is
    recorded and `change` is None. `force=True` (with a `reason`) moves it anyway, marked forced;
    `gate=False` moves it unscored."""
    if force and not reason.strip():
        raise LayeropsError("a forced promotion needs a reason: pass --reason '...' (reason=)")
    repository = _context.repository(home, tracking_uri, create=False)
    data, source = read_eval_data(eval_data) if gate else (None, "")
    number = _version(repository, name, version)
    return _promote(
        repository, name, number, alias=alias, force=force, reason=reason,
        data=data, source=source, policy=policy, gate=gate, against=against,
    )  # fmt: skip


def _version(repository: ModelRepository, name: str, version: int | None) -> int:
    return version if version is not None else repository.list_versions(name)[0].version


def read_eval_data(eval_data: EvalData) -> tuple[pd.DataFrame | None, str]:
    """The evaluation rows and where they came from (None: none given)."""
    if eval_data is None:
        return None, ""
    if isinstance(eval_data, pd.DataFrame):
        return eval_data, f"a DataFrame of {len(eval_data)} rows"
    path = Path(eval_data)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise DataError(f"{path}: evaluation data must be a .csv or .parquet file")
    try:
        frame = pd.read_parquet(path) if suffix != ".csv" else pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: evaluation data file not found") from None
    except Exception as exc:  # pandas and pyarrow raise many types for a damaged file
        raise DataError(f"{path}: cannot read the evaluation data: {exc}".splitlines()[0]) from exc
    return frame, str(path.resolve())
