"""Model quality: layerops' trained winner beside reference systems on the same held-out test rows.

Data sets (nothing is downloaded): scikit-learn's shipped breast_cancer, wine and digits
(classification, f1_macro, higher is better) and diabetes (regression, RMSE, lower is better),
and layerops' generated shipping set (regression on `cost`, with text categoricals and a few
missing weights). Each data set is split `--splits` times (seeded; 80 % dev / 20 % test,
stratified for classification); every system trains on the dev rows only and is scored on the
test rows:

- layerops: `layerops.train` (no registration) with baseline, linear, decision_tree,
  random_forest, xgboost and lightgbm, `--trials` tuning trials each, default cleaning, the
  winner refitted on all dev rows (`selection.refit_all`); its pipeline predicts the raw test frame;
- HGB: scikit-learn's HistGradientBoosting with its defaults (categoricals from the dtype);
- linear: standard-scaled LogisticRegression (max_iter 5000) / RidgeCV, categoricals one-hot;
- FLAML: `flaml.AutoML` (macro_f1 / rmse) given layerops' wall time on the same split as its
  time budget and the same thread count (its real wall time is printed; it may overrun).

Printed: per data set each system's mean ± std of the metric over the splits and mean wall
seconds; the mean rank of each system over all (data set, split) pairs (1 = best, ties averaged);
and two goals, each PASS or FAIL: (a) layerops' mean rank is no worse than FLAML's; (b) on no data
set is layerops' mean worse than HGB's by more than HGB's standard deviation over the splits. The
exit code is 0 either way. Progress goes to stderr.

Run it on an otherwise idle machine: the OpenMP learners (HGB, LightGBM, XGBoost) slow down many
times over when another process holds one of their cores, which skews the wall times and so
FLAML's budget.

    uv run --frozen --group bench python bench/quality.py [--splits 5] [--trials 10] \\
        [--datasets breast_cancer,wine,digits,diabetes,shipping] [--shipping-rows 2000] \\
        [--jobs N] [--markdown]

(`make bench` syncs the `bench` dependency group, FLAML, and runs it with the defaults.)
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

import numpy as np
import pandas as pd
from flaml.automl import AutoML
from sklearn import datasets as sk_datasets
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import f1_score, root_mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

import layerops
from layerops.datasets import shipping
from layerops.errors import SpecError
from layerops.spec import parse_spec
from layerops.training.cores import available_cores

Task = Literal["classification", "regression"]
SYSTEMS = ("layerops", "HGB", "linear", "FLAML")
CANDIDATES = ("baseline", "linear", "decision_tree", "random_forest", "xgboost", "lightgbm")
DATASETS = ("breast_cancer", "wine", "digits", "diabetes", "shipping")
TEST_SHARE = 0.2


@dataclass(frozen=True)
class DataSet:
    """One benchmark data set: the frame (features and target), its target and its task."""

    name: str
    frame: pd.DataFrame
    target: str
    task: Task
    categorical: tuple[str, ...] = ()

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    @property
    def metric(self) -> str:
        return "f1_macro" if self.classification else "RMSE"

    def shown(self, value: float) -> str:
        """A metric value as printed: 4 decimals for f1_macro, 3 for RMSE."""
        return f"{value:.4f}" if self.classification else f"{value:.3f}"


@dataclass(frozen=True)
class Outcome:
    """One system's score on one split's test rows and its wall seconds (fit only)."""

    score: float
    seconds: float
    note: str = ""


def _identifier(name: str) -> str:
    """A column name as a Python identifier ("mean radius" -> "mean_radius")."""
    return re.sub(r"\W+", "_", name).strip("_")


def _sklearn_set(name: str, loader: Callable[..., Any], task: Task) -> DataSet:
    frame: pd.DataFrame = loader(as_frame=True).frame
    frame = frame.rename(columns=_identifier)
    return DataSet(name, frame, "target", task)


def load_dataset(name: str, shipping_rows: int) -> DataSet:
    """The data set called `name`, built locally."""
    if name == "breast_cancer":
        return _sklearn_set(name, sk_datasets.load_breast_cancer, "classification")
    if name == "wine":
        return _sklearn_set(name, sk_datasets.load_wine, "classification")
    if name == "digits":
        return _sklearn_set(name, sk_datasets.load_digits, "classification")
    if name == "diabetes":
        return _sklearn_set(name, sk_datasets.load_diabetes, "regression")
    if name == "shipping":
        frame = shipping(shipping_rows, seed=0)
        return DataSet(name, frame, "cost", "regression", ("origin", "destination", "service_level"))
    raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")


def reference_features(data: DataSet) -> pd.DataFrame:
    """The features for HGB, linear and FLAML: text categoricals as pandas categories.

    The categories are the data set's whole label set (not learned from the test rows: each
    split's dev rows hold every label), so dev and test frames share one encoding.
    """
    features = data.frame.drop(columns=data.target)
    for column in data.categorical:
        values = features[column].astype(str)
        features[column] = pd.Categorical(values, categories=sorted(values.unique()))
    return features


def score(data: DataSet, truth: Any, predicted: Any) -> float:
    """f1_macro (classification) or RMSE (regression)."""
    if data.classification:
        return float(f1_score(truth, predicted, average="macro"))
    return float(root_mean_squared_error(truth, predicted))


def refit_all_accepted() -> bool:
    """Whether this layerops' spec knows `selection.refit_all` (being added concurrently)."""
    probe = {
        "name": "probe",
        "target": "y",
        "candidates": [{"name": "baseline"}],
        "selection": {"refit_all": True},
    }
    try:
        parse_spec(probe, source="probe")
    except SpecError:
        return False
    return True


def layerops_spec(data: DataSet, seed: int, trials: int, refit_all: bool) -> dict[str, Any]:
    """The spec a user would write: every candidate, `trials` trials, default cleaning."""
    selection: dict[str, Any] = {"refit_all": True} if refit_all else {}
    return {
        "name": f"bench_quality_{data.name}",
        "target": data.target,
        "task": data.task,
        "seed": seed,
        "candidates": [{"name": name} for name in CANDIDATES],
        "tuning": {"trials": trials},
        "selection": selection,
        "cleaning": {},  # the defaults
    }


def run_layerops(
    data: DataSet, dev: pd.DataFrame, test: pd.DataFrame, seed: int, args: argparse.Namespace, refit_all: bool
) -> Outcome:
    """Train with `layerops.train` on the dev rows and score its pipeline on the test rows."""
    spec = layerops_spec(data, seed, args.trials, refit_all)
    started = time.perf_counter()
    result = layerops.train(spec, data=dev, register=False, jobs=args.jobs)
    seconds = time.perf_counter() - started
    # The pipeline takes the raw feature frame (its ColumnTransformer selects the columns the
    # cleaner kept) and answers class indices into the bundle's `classes` (text labels).
    predicted = np.asarray(result.bundle.model.predict(test.drop(columns=data.target)))
    truth = test[data.target]
    if data.classification:
        classes = result.bundle.metadata.classes
        if classes is None or not np.issubdtype(predicted.dtype, np.integer):
            raise RuntimeError(f"expected class indices and the bundle's classes, got {predicted.dtype}")
        return Outcome(
            score(data, truth.astype(str), [classes[int(i)] for i in predicted]), seconds, result.winner
        )
    return Outcome(score(data, truth, predicted), seconds, result.winner)


def _fit_scored(
    data: DataSet, model: BaseEstimator, x_dev: Any, y_dev: Any, x_test: Any, y_test: Any, jobs: int
) -> Outcome:
    with threadpool_limits(limits=jobs):
        started = time.perf_counter()
        model.fit(x_dev, y_dev)
        seconds = time.perf_counter() - started
        return Outcome(score(data, y_test, model.predict(x_test)), seconds)


def hgb_model(data: DataSet, seed: int) -> BaseEstimator:
    """HistGradientBoosting with its defaults (categoricals taken from the pandas dtype)."""
    if data.classification:
        return HistGradientBoostingClassifier(random_state=seed, categorical_features="from_dtype")
    return HistGradientBoostingRegressor(random_state=seed, categorical_features="from_dtype")


def linear_model(data: DataSet, features: pd.DataFrame) -> BaseEstimator:
    """Standard-scaled logistic regression / RidgeCV; categoricals one-hot, missing values median."""
    numeric = [column for column in features.columns if column not in data.categorical]
    prepare = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(data.categorical)),
        ]
    )
    head = LogisticRegression(max_iter=5000) if data.classification else RidgeCV()
    return make_pipeline(prepare, head)


def run_flaml(
    data: DataSet,
    x_dev: pd.DataFrame,
    y_dev: pd.Series,
    x_test: pd.DataFrame,
    y_test: pd.Series,
    seed: int,
    budget: float,
    jobs: int,
) -> Outcome:
    """FLAML's AutoML with `budget` seconds and `jobs` threads; the wall time actually taken."""
    automl = AutoML()  # type: ignore[no-untyped-call]  # flaml has no annotations here
    started = time.perf_counter()
    automl.fit(
        x_dev,
        y_dev,
        task=data.task,
        time_budget=budget,
        metric="macro_f1" if data.classification else "rmse",
        seed=seed,
        n_jobs=jobs,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    return Outcome(score(data, y_test, automl.predict(x_test)), seconds, str(automl.best_estimator))


def run_split(data: DataSet, split: int, args: argparse.Namespace, refit_all: bool) -> dict[str, Outcome]:
    """Every system on one seeded dev/test split of `data`."""
    seed = split
    y = data.frame[data.target]
    dev_index, test_index = train_test_split(
        np.arange(len(data.frame)),
        test_size=TEST_SHARE,
        random_state=seed,
        stratify=y if data.classification else None,
    )
    dev, test = data.frame.iloc[dev_index], data.frame.iloc[test_index]
    features = reference_features(data)
    x_dev, x_test = features.iloc[dev_index], features.iloc[test_index]
    y_dev, y_test = y.iloc[dev_index], y.iloc[test_index]
    outcomes = {"layerops": run_layerops(data, dev, test, seed, args, refit_all)}
    outcomes["HGB"] = _fit_scored(data, hgb_model(data, seed), x_dev, y_dev, x_test, y_test, args.jobs)
    outcomes["linear"] = _fit_scored(
        data, linear_model(data, features), x_dev, y_dev, x_test, y_test, args.jobs
    )
    budget = outcomes["layerops"].seconds
    outcomes["FLAML"] = run_flaml(data, x_dev, y_dev, x_test, y_test, seed, budget, args.jobs)
    return outcomes


def warm_up(jobs: int) -> None:
    """One small untimed `layerops.train`, so the first timed split pays no import costs."""
    frame = sk_datasets.load_iris(as_frame=True).frame.rename(columns=_identifier)
    spec = {
        "name": "bench_quality_warm_up",
        "target": "target",
        "task": "classification",
        "candidates": [{"name": name} for name in CANDIDATES],
        "tuning": {"trials": 1},
    }
    layerops.train(spec, data=frame, register=False, jobs=jobs)


# -- the report ------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def mean_ranks(results: dict[str, list[dict[str, Outcome]]], sets: dict[str, DataSet]) -> dict[str, float]:
    """Each system's mean rank over every (data set, split) pair: 1 = best, ties averaged."""
    ranks: dict[str, list[float]] = {system: [] for system in SYSTEMS}
    for name, splits in results.items():
        for outcomes in splits:
            scores = pd.Series({system: outcomes[system].score for system in SYSTEMS})
            ranked = scores.rank(method="average", ascending=not sets[name].classification)
            for system in SYSTEMS:
                ranks[system].append(float(ranked[system]))
    return {system: statistics.fmean(values) for system, values in ranks.items()}


def report(results: dict[str, list[dict[str, Outcome]]], sets: dict[str, DataSet], markdown: bool) -> str:
    """The table, the mean ranks and the two goals."""
    header = ["data set", "metric", *SYSTEMS, *(f"{system} s" for system in SYSTEMS)]
    rows: list[list[str]] = []
    shortfalls: list[str] = []
    for name, splits in results.items():
        data = sets[name]
        cells, seconds = [], []
        stats = {}
        for system in SYSTEMS:
            mean, std = _mean_std([outcomes[system].score for outcomes in splits])
            stats[system] = (mean, std)
            cells.append(f"{data.shown(mean)} ± {data.shown(std)}")
            seconds.append(f"{statistics.fmean(outcomes[system].seconds for outcomes in splits):.1f}")
        rows.append([name, data.metric + (" ↑" if data.classification else " ↓"), *cells, *seconds])
        (ours, _), (hgb, hgb_std) = stats["layerops"], stats["HGB"]
        worse_by = (hgb - ours) if data.classification else (ours - hgb)
        if worse_by > hgb_std:
            shortfalls.append(
                f"{name} (layerops {data.shown(ours)} vs HGB {data.shown(hgb)} ± {data.shown(hgb_std)})"
            )
    ranks = mean_ranks(results, sets)
    pairs = sum(len(splits) for splits in results.values())
    rank_rows = [[system, f"{rank:.2f}"] for system, rank in sorted(ranks.items(), key=lambda item: item[1])]
    goal_a = ranks["layerops"] <= ranks["FLAML"]
    lines = [
        _table(header, rows, markdown),
        "",
        f"Mean rank over {pairs} (data set, split) pairs (1 = best, ties averaged):",
        "",
        _table(["system", "mean rank"], rank_rows, markdown),
        "",
        f"goal (a) layerops' mean rank <= FLAML's: {ranks['layerops']:.2f} vs {ranks['FLAML']:.2f} -> "
        + ("PASS" if goal_a else "FAIL"),
        "goal (b) never worse than HGB defaults by more than one std: "
        + ("PASS" if not shortfalls else "FAIL: " + "; ".join(shortfalls)),
    ]
    if any(len(splits) < 2 for splits in results.values()):
        lines.append("(one split: no spread, so any shortfall against HGB counts in goal (b))")
    return "\n".join(lines)


def main() -> None:
    """Run every system on every split of every data set; print the table and the goals."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--splits", type=int, default=5, help="repeated 80/20 dev/test splits (default 5)")
    parser.add_argument(
        "--trials", type=int, default=10, help="layerops tuning trials per candidate (default 10)"
    )
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: all)")
    parser.add_argument(
        "--shipping-rows", type=int, default=2000, help="rows of the shipping set (default 2000)"
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="threads for every system (default: the cores available)"
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args()
    if args.splits < 1 or args.trials < 1:
        parser.error("--splits and --trials must be at least 1")
    args.jobs = args.jobs or available_cores()
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    sets = {name: load_dataset(name, args.shipping_rows) for name in names}

    refit_all = refit_all_accepted()
    if not refit_all:
        print(
            "note: this layerops' spec has no selection.refit_all (the winner is not refitted on all"
            " dev rows); running without it",
            file=sys.stderr,
        )
    started = time.perf_counter()
    print("warming up (one untimed layerops.train on iris)...", file=sys.stderr, flush=True)
    warm_up(args.jobs)
    results: dict[str, list[dict[str, Outcome]]] = {}
    for name, data in sets.items():
        results[name] = []
        for split in range(args.splits):
            outcomes = run_split(data, split, args, refit_all)
            results[name].append(outcomes)
            parts = [
                f"{system} {data.shown(o.score)} ({o.note + ', ' if o.note else ''}{o.seconds:.1f} s)"
                for system, o in outcomes.items()
            ]
            print(
                f"[{name} split {split + 1}/{args.splits}] " + " | ".join(parts), file=sys.stderr, flush=True
            )

    print(
        f"{args.splits} splits (80/20, seeds 0..{args.splits - 1}); layerops {len(CANDIDATES)} candidates × "
        f"{args.trials} trials{', refit_all' if refit_all else ', no refit_all'}; {args.jobs} threads; "
        f"FLAML {metadata.version('flaml')} with layerops' wall time as its budget; "
        '↑ higher is better, ↓ lower is better; "… s": mean wall seconds (layerops: the whole '
        "layerops.train call; the others: their fit)\n"
    )
    print(report(results, sets, args.markdown))
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
