"""The innermost middleware answers raw ASGI routes itself and passes everything else on."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from layerops.delivery.middleware import DirectRoutesMiddleware


class Echo:
    """A raw ASGI endpoint answering its path parameter and whether FastAPI-style wrappers ran."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wrapped = "starlette.exception_handlers" in scope
        await PlainTextResponse(f"{scope['path_params']['name']} wrapped={wrapped}")(scope, receive, send)


def test_full_matches_skip_the_app_and_everything_else_reaches_it() -> None:
    direct = Route("/models/{name}/predict", Echo(), methods=["POST"])
    app = Starlette(routes=[direct, Route("/other", lambda request: PlainTextResponse("router"))])
    app.add_middleware(DirectRoutesMiddleware, routes=[direct])
    with TestClient(app) as client:
        answer = client.post("/models/iris/predict")
        assert (answer.status_code, answer.text) == (200, "iris wrapped=False")
        assert client.get("/models/iris/predict").status_code == 405  # the router's answer
        assert client.get("/other").text == "router"
        assert client.post("/models/iris/predict/extra").status_code == 404
