"""Which rows the gate may score both models on when the operator names none: rows that neither
model was fitted on.

The challenger's held-out test sample is unseen by the challenger, but not necessarily by the
incumbent:
- trained on the same data set (same content hash) with another split (another seed or split
  setting), the incumbent fitted on most of the challenger's test rows. Only rows in both
  held-out samples are honest: the gate scores that intersection (all rows when the splits are
  the same), and refuses to guess when the incumbent kept no held-out sample (a model fitted on
  every row with `selection.refit_all`, or one saved before bundles kept it);
- trained on other data, the incumbent may still have seen some rows (a data file that grew);
  rows of its reference sample (a sample of its training rows) are left out. Other overlap
  cannot be seen from the bundles: name evaluation rows then (`--eval-data`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from layerops.errors import LayeropsError
from layerops.releases.gate import Contender


def unseen_rows(challenger: Contender, incumbent: Contender | None) -> tuple[pd.DataFrame | None, str]:
    """Rows of the challenger's held-out sample the incumbent did not fit on, and where they came
    from; (None, "") when the challenger keeps no held-out sample."""
    holdout = challenger.bundle.holdout
    if holdout is None:
        return None, ""
    source = f"held-out test rows of v{challenger.version}"
    if incumbent is None:
        return holdout, source
    mine, theirs = challenger.bundle.metadata.lineage, incumbent.bundle.metadata.lineage
    if mine.dataset_sha256 == theirs.dataset_sha256:
        return _held_out_by_both(challenger, incumbent, source)
    reference = incumbent.bundle.reference
    if reference is None:
        return holdout, source
    kept = holdout.loc[~_row_keys(holdout, reference.columns).isin(_row_keys(reference, reference.columns))]
    dropped = len(holdout) - len(kept)
    if dropped:
        source += f" ({dropped} left out: v{incumbent.version} trained on them)"
    return kept.reset_index(drop=True), source


def _held_out_by_both(challenger: Contender, incumbent: Contender, source: str) -> tuple[pd.DataFrame, str]:
    holdout = challenger.bundle.holdout
    assert holdout is not None
    other = incumbent.bundle.holdout
    if other is None:
        raise LayeropsError(
            f"v{incumbent.version} was trained on the same data as v{challenger.version} but keeps no "
            "held-out rows, so it may have fitted on any of them: pass evaluation data neither model "
            "was trained on with --eval-data FILE (eval_data=)"
        )
    columns = [c for c in holdout.columns if c in other.columns]
    both = holdout.loc[_row_keys(holdout, columns).isin(_row_keys(other, columns))].reset_index(drop=True)
    if both.empty:
        raise LayeropsError(
            f"v{challenger.version} and v{incumbent.version} were trained on the same data with other "
            "splits and no held-out row is common to both: pass evaluation data with --eval-data FILE"
        )
    if len(both) < len(holdout):
        source += f" also held out by v{incumbent.version} (same data, another split)"
    return both, source


def _row_keys(frame: pd.DataFrame, columns: pd.Index | list[str]) -> pd.Series:
    """A 64-bit hash of each row's values in `columns` (text and numbers hashed alike)."""
    present = [c for c in columns if c in frame.columns]
    values = frame[present].astype(object).where(frame[present].notna(), None)
    hashed = pd.util.hash_pandas_object(values, index=False)
    return pd.Series(np.asarray(hashed), index=frame.index)
