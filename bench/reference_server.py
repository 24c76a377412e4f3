"""The "careful engineer" reference: a minimal FastAPI + ONNX Runtime server for one model.

No auth, no input validation, no metrics, no logging: it reads the JSON body with orjson, builds
one [N, 1] array per graph input (as the layerops ONNX export expects, see
`layerops.bundle.onnx_io`), runs the session on the event loop (or, with
`REFERENCE_ENDPOINT=sync`, in FastAPI's thread pool) and answers with orjson.

    REFERENCE_ONNX=model.onnx [REFERENCE_CLASSES=a,b] [REFERENCE_ORT_THREADS=1] \\
        uvicorn --app-dir bench --factory reference_server:app_from_env --port 8001 [--workers 2]

Accepts `POST /predict` with one JSON object (a row: feature -> value) or a list of them and
answers `{"predictions": [label, ...], "probabilities": [[p, ...], ...]}` (classifiers). Numeric
inputs only (the benchmark model has no categorical feature).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
import orjson
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

_DTYPES = {"tensor(double)": np.float64, "tensor(float)": np.float32}


async def raw_body(request: Request) -> bytes:
    """The request body, for the `def` endpoint (module level so FastAPI can resolve it)."""
    return await request.body()


def create_app(
    onnx_path: str, classes: list[str] | None = None, threads: int = 1, endpoint: str = "async"
) -> FastAPI:
    """The reference app serving the ONNX graph at `onnx_path`.

    `endpoint="async"` scores on the event loop; `"sync"` is the common `def` endpoint that
    FastAPI runs in its thread pool (one thread hop per request).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    inputs = [(node.name, _DTYPES[node.type]) for node in session.get_inputs()]
    labels = np.asarray(classes, dtype=object) if classes else None
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def score(body: bytes) -> Response:
        payload: Any = orjson.loads(body)
        rows = payload if isinstance(payload, list) else [payload]
        n = len(rows)
        feeds = {
            name: np.fromiter((row[name] for row in rows), dtype=dtype, count=n).reshape(n, 1)
            for name, dtype in inputs
        }
        label, probabilities = session.run(["label", "probabilities"], feeds)
        predictions = labels[label] if labels is not None else label
        answer = {"predictions": predictions.tolist(), "probabilities": probabilities}
        content = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(content, media_type="application/json")

    if endpoint == "async":

        @app.post("/predict")
        async def predict(request: Request) -> Response:
            return score(await request.body())  # on the event loop: the model takes microseconds

    else:

        @app.post("/predict")
        def predict_in_threadpool(body: Annotated[bytes, Depends(raw_body)]) -> Response:
            return score(body)  # FastAPI runs a `def` endpoint in its thread pool

    return app


def app_from_env() -> FastAPI:
    """The app as `REFERENCE_ONNX`, `_CLASSES`, `_ORT_THREADS` and `_ENDPOINT` describe it."""
    classes = [c for c in os.environ.get("REFERENCE_CLASSES", "").split(",") if c]
    threads = int(os.environ.get("REFERENCE_ORT_THREADS", "1"))
    endpoint = os.environ.get("REFERENCE_ENDPOINT", "async")
    return create_app(os.environ["REFERENCE_ONNX"], classes or None, threads, endpoint)
