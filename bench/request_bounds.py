"""How much work one hostile request can make the server do, now that work is bounded up front.

The probe that found the problem: four 2.3 MiB CSV bodies of 250,000 columns to `/invocations`
took ~3.5 minutes of one core each and 4.9 GB of RSS. This script trains a small iris model into
a temporary home, builds the app in this process and sends, one at a time, the heaviest request
each transport still accepts to parse (10 MiB bodies of the worst shapes) and the hostile ones.
For each it prints the wall time, the process's peak RSS growth while it ran and the status; the
reference is a valid 10,000-row request (the largest the server answers), measured the same way.

    uv run python bench/request_bounds.py
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import psutil
from fastapi.testclient import TestClient

from layerops.datasets import iris
from layerops.delivery.app import create_app
from layerops.delivery.runtime import build_runtime
from layerops.delivery.settings import ServeSettings
from layerops.repository.factory import open_repository
from layerops.settings import Settings
from layerops.spec import parse_spec
from layerops.training.pipeline import train

KEY = "bench-key-0123456789abcdef"
LIMIT = 10 * 2**20
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
FEATURES = list(ROW)


def train_iris(home: Path) -> None:
    data = home / "data"
    data.mkdir(parents=True)
    iris().to_csv(data / "iris.csv", index=False)
    spec = {
        "name": "iris",
        "data": {"path": "iris.csv"},
        "target": "species",
        "cleaning": {"collinearity_threshold": None},
        "candidates": [{"name": "random_forest", "params": {"n_estimators": 20, "max_depth": 4}}],
    }
    repository = open_repository(Settings(home=home))
    result = train(parse_spec(spec, base_dir=data), repository)
    assert result.version is not None
    repository.set_alias("iris", "production", result.version.version, reason="bench")


def fill(prefix: bytes, item: bytes, suffix: bytes, size: int = LIMIT) -> bytes:
    """`prefix` + `item` repeated (comma-separated) + `suffix`, just under `size` bytes."""
    count = (size - len(prefix) - len(suffix)) // (len(item) + 1)
    return prefix + b",".join([item] * count) + suffix


def cases() -> dict[str, tuple[str, bytes, str]]:
    wide_header = ",".join([*FEATURES, *(f"x{i}" for i in range(250_000))])
    csv_1024 = ",".join([*FEATURES, *(f"x{i}" for i in range(1020))]) + "\n"
    csv_line = ",".join(["1"] * 1024) + "\n"
    return {
        "reference: 10,000 valid rows (native)": (
            "/models/iris/predict",
            orjson.dumps([ROW] * 10_000),
            "json",
        ),
        "250,000-column CSV, 2.3 MiB (mlflow)": (
            "/invocations?model=iris",
            (wide_header + "\n" + ",".join(["1"] * 250_004) + "\n").encode(),
            "csv",
        ),
        "1,024-column CSV, 10 MiB (mlflow, ignore)": (
            "/invocations?model=iris",
            (csv_1024 + csv_line * ((LIMIT - len(csv_1024)) // len(csv_line))).encode(),
            "csv",
        ),
        "10 MiB of empty rows [{},...] (native)": ("/models/iris/predict", fill(b"[", b"{}", b"]"), "json"),
        "10 MiB of empty lists [[],...] (native)": ("/models/iris/predict", fill(b"[", b"[]", b"]"), "json"),
        "10 MiB of one V2 tensor (v2)": (
            "/v2/models/iris/infer",
            fill(b'{"inputs":[{"name":"sepal_length","shape":[1],"datatype":"FP64","data":[', b"0", b"]}]}"),
            "json",
        ),
        "10 MiB dataframe_split rows (mlflow)": (
            "/invocations?model=iris",
            fill(b'{"dataframe_split":{"columns":["a"],"data":[', b"[0]", b"]}}"),
            "json",
        ),
        "100,000 V2 tensors (v2)": (
            "/v2/models/iris/infer",
            orjson.dumps(
                {
                    "inputs": [
                        {"name": f"x{i}", "shape": [1], "datatype": "FP64", "data": [0]}
                        for i in range(100_000)
                    ]
                }
            ),
            "json",
        ),
    }


def measure(send: Callable[[], int]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS growth in MiB (sampled every 2 ms) and the status of `send()`."""
    process = psutil.Process()
    base = process.memory_info().rss
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    status = send()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    return elapsed, (peak - base) / 2**20, status


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        train_iris(home)
        settings = ServeSettings(home=home, api_keys=[KEY], reload_interval_seconds=0, extra_fields="ignore")
        with TestClient(
            create_app(build_runtime(settings, open_repository(settings))),
            headers={"Authorization": f"Bearer {KEY}"},
        ) as client:
            client.post("/models/iris/predict", json=ROW)
            rows = []
            for name, (path, body, kind) in cases().items():
                headers = {"Content-Type": "text/csv" if kind == "csv" else "application/json"}
                request = partial(client.post, path, content=body, headers=headers)
                seconds, grown, status = measure(lambda request=request: int(request().status_code))
                rows.append((name, len(body) / 2**20, seconds, grown, status))
    reference = rows[0][2]
    print("| request | body MiB | status | seconds | ÷ reference | peak RSS growth MiB |")
    print("|---|--:|--:|--:|--:|--:|")
    for name, size, seconds, grown, status in rows:
        print(f"| {name} | {size:.1f} | {status} | {seconds:.3f} | {seconds / reference:.2f} | {grown:.0f} |")


if __name__ == "__main__":
    main()
