"""The one seam: a transport only decodes and encodes around `InferenceService.infer`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse

from layerops.delivery.feeds import Feeds
from layerops.delivery.models import ServedModel
from layerops.delivery.service import Answer, InferenceRequest, InferenceService
from tests.delivery.conftest import IRIS_ROW, USER


def add_toy_transport(app: FastAPI, service: InferenceService) -> None:
    """`POST /toy/{name}` with `5.1 3.5 1.4 0.2` in, `setosa` out: a whole transport."""

    async def toy(name: str, request: Request) -> PlainTextResponse:
        body = await request.body()

        def decode(model: ServedModel) -> Feeds:
            values = [float(v) for v in body.split()]
            return model.validator.row_feeds(dict(zip(model.validator.names, values, strict=False)))

        answer = await service.infer(InferenceRequest(name, decode, size=len(body)))
        return PlainTextResponse(f"{answer.prediction.predictions()[0]} v{answer.version}")

    app.add_api_route("/toy/{name}", toy, methods=["POST"])


def test_a_toy_transport_needs_only_the_public_service_api(app: FastAPI) -> None:
    add_toy_transport(app, app.state.runtime.service)
    with TestClient(app, headers=USER) as client:
        native = client.post("/models/iris/predict", json=IRIS_ROW).json()
        toy = client.post("/toy/iris", content=" ".join(str(v) for v in IRIS_ROW.values()))
        assert toy.status_code == 200 and toy.text == f"{native['predictions'][0]} v{native['version']}"
        missing = client.post("/toy/iris", content="5.1 3.5")  # the validator's 422, in the native body
        assert missing.status_code == 422 and "petal_length" in missing.json()["error"]["message"]


def test_request_observers_see_every_answered_request(app: FastAPI) -> None:
    seen: list[tuple[InferenceRequest, Feeds, Answer]] = []
    app.state.runtime.service.request_observers.append(lambda *args: seen.append(args))
    with TestClient(app, headers=USER) as client:
        client.post("/models/iris/predict", json=[IRIS_ROW, IRIS_ROW], headers={"X-Request-ID": "obs-1"})
        client.post(
            "/v2/models/shipping/infer",
            json={"inputs": [{"name": "length", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
        )
        client.post(
            "/invocations?model=iris",
            json={"dataframe_records": [IRIS_ROW]},
            headers={"X-Request-ID": "obs-3"},
        )
    assert [(r.model, r.request_id, f.rows, a.version) for r, f, a in seen] == [
        ("iris", "obs-1", 2, 1),
        ("iris", "obs-3", 1, 1),
    ]  # the shipping request was invalid (missing tensors): no answer, nothing observed
    assert all(a.seconds > 0 for _, _, a in seen)
