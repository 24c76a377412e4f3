"""Single-row latency of two models measured side by side, at gate time, on this machine.

Training records a p99 over 30 calls, on whatever the machine was doing then; two trainings on a
busy machine differ by several times for the same model. The gate instead times both native
pipelines now, interleaved (challenger, incumbent, then incumbent, challenger...) on the same
rows, so a stall of the machine hits both and the comparison stays fair.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from layerops.bundle import ModelBundle
from layerops.releases._scoring import model_frame

WARM_CALLS = 3


def paired_single_row_latency(
    bundles: Sequence[ModelBundle], data: pd.DataFrame, *, calls: int, budget_seconds: float = 3.0
) -> list[tuple[float, float]]:
    """(p50, p99) in ms of one-row native predictions of each bundle, timed alternately on the same
    rows of `data`: `calls` rounds, fewer (at least 20) when `budget_seconds` runs out first."""
    rows = min(calls, len(data))
    singles = []
    predictors = []
    for bundle in bundles:
        frame = model_frame(data.iloc[:rows], bundle.metadata, bundle.metadata.name)
        singles.append([frame.iloc[[i]] for i in range(rows)])
        model = bundle.model
        predictors.append(model.predict_proba if bundle.metadata.task == "classification" else model.predict)
    for predict, one in zip(predictors, singles, strict=True):
        for _ in range(WARM_CALLS):
            predict(one[0])
    timings: list[list[float]] = [[] for _ in bundles]
    started = time.perf_counter()
    for call in range(calls):
        order = range(len(bundles)) if call % 2 == 0 else reversed(range(len(bundles)))
        for k in order:
            row = singles[k][call % rows]
            begin = time.perf_counter()
            predictors[k](row)
            timings[k].append(time.perf_counter() - begin)
        if call >= 20 and time.perf_counter() - started > budget_seconds:
            break
    return [(float(np.median(t)) * 1000.0, float(np.percentile(t, 99)) * 1000.0) for t in timings]
