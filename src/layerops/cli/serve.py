"""`layerops serve`: run the delivery layer under uvicorn, configured by flags and LAYEROPS_* vars.

Flags are exported as `LAYEROPS_*` variables so every uvicorn worker process builds the same
`ServeSettings` in `app_factory`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Annotated

import typer

from layerops.errors import LayeropsError

if TYPE_CHECKING:
    from fastapi import FastAPI


def app_factory() -> FastAPI:
    """Build the app from the environment (called by uvicorn in each worker)."""
    from layerops.delivery.app import create_app
    from layerops.delivery.runtime import build_runtime
    from layerops.delivery.settings import ServeSettings
    from layerops.repository.factory import open_repository

    settings = ServeSettings()
    return create_app(build_runtime(settings, open_repository(settings)))


def serve(  # noqa: PLR0913 - a typer command: each option is a parameter
    ctx: typer.Context,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="NAME, NAME@ALIAS or NAME@VERSION; repeatable (env: LAYEROPS_MODELS, comma-separated; "
            "default: every model with a production alias)",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address (env: LAYEROPS_HOST; default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (env: LAYEROPS_PORT; default 8000)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (env: LAYEROPS_WORKERS; default 1)")
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="auto, onnx or native (env: LAYEROPS_ENGINE; default auto)")
    ] = None,
    reload_interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between alias checks; 0 disables "
            "(env: LAYEROPS_RELOAD_INTERVAL_SECONDS; default 30)"
        ),
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a connection may take to send a request's headers before it is closed "
            "(env: LAYEROPS_HEADER_TIMEOUT_SECONDS; default 10)"
        ),
    ] = None,
    api_key_file: Annotated[
        str | None, typer.Option(help="File of SHA-256 key digests (env: LAYEROPS_API_KEY_FILE)")
    ] = None,
    batching: Annotated[
        bool | None,
        typer.Option(
            "--batching/--no-batching", help="Adaptive micro-batching (env: LAYEROPS_BATCHING; default on)"
        ),
    ] = None,
    start_degraded: Annotated[
        bool, typer.Option("--start-degraded", help="Start even if a model fails to load")
    ] = False,
) -> None:
    """Serve models over HTTP: native REST, KServe V2, MLflow /invocations, health and metrics."""
    import uvicorn

    from layerops.delivery.http_protocol import header_timeout_protocol
    from layerops.delivery.settings import ServeSettings

    settings = ctx.obj
    overrides = {
        "LAYEROPS_HOME": str(settings.home),
        "LAYEROPS_TRACKING_URI": settings.tracking_uri,
        "LAYEROPS_LOG_LEVEL": settings.log_level,
        "LAYEROPS_MODELS": ",".join(model) if model else None,
        "LAYEROPS_HOST": host,
        "LAYEROPS_PORT": None if port is None else str(port),
        "LAYEROPS_WORKERS": None if workers is None else str(workers),
        "LAYEROPS_ENGINE": engine,
        "LAYEROPS_RELOAD_INTERVAL_SECONDS": None if reload_interval is None else str(reload_interval),
        "LAYEROPS_HEADER_TIMEOUT_SECONDS": None if header_timeout is None else str(header_timeout),
        "LAYEROPS_API_KEY_FILE": api_key_file,
        "LAYEROPS_START_DEGRADED": "true" if start_degraded else None,
        "LAYEROPS_BATCHING": None if batching is None else str(batching).lower(),
    }
    os.environ.update({k: v for k, v in overrides.items() if v is not None})
    try:
        serve_settings = ServeSettings()
    except ValueError as exc:
        raise LayeropsError(f"invalid server setting: {_first_error(exc)}") from None
    # Preflight: the initiating phase runs first, so a model that cannot load stops start-up with
    # one clear line. One worker then serves this very app; several build their own, so their
    # supervisor checks in a child process and stays small (it would hold every model for nothing).
    target: object
    if serve_settings.workers == 1:
        app = app_factory()
        served = preflight(app, serve_settings.start_degraded)
        target = app
    else:
        served = _preflight_in_child(serve_settings.start_degraded)
        target = "layerops.cli.serve:app_factory"
    typer.echo(
        f"layerops serving {served or 'no model yet'} on http://{serve_settings.host}:{serve_settings.port} "
        f"with {serve_settings.workers} worker(s); docs at /docs",
        err=True,
    )
    # uvicorn shuts down gracefully on SIGTERM (stop accepting, finish in-flight requests), then
    # re-raises the signal to the handler in place before it started; with the default handler
    # the process would end as "killed by SIGTERM". A completed graceful shutdown exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(
        target,  # type: ignore[arg-type]
        factory=serve_settings.workers > 1,
        host=serve_settings.host,
        port=serve_settings.port,
        workers=serve_settings.workers,
        # A protocol factory, not a class: uvicorn calls it like one, and it pickles into workers.
        http=header_timeout_protocol(serve_settings.header_timeout_seconds),  # type: ignore[arg-type]
        access_log=False,
        log_level=serve_settings.log_level.lower(),
        timeout_graceful_shutdown=max(5, int(serve_settings.request_timeout_seconds) + 5),
        lifespan="on",
    )


def preflight(app: FastAPI, degraded: bool) -> str:
    """Run `app`'s initiating phase now (raises `LayeropsError`); describe what it serves."""
    runtime = app.state.runtime
    runtime.reloader.load_all(degraded=degraded)
    return ", ".join(f"{m.name} v{m.version} ({m.engine.name})" for m in runtime.registry.models())


def _preflight_child(degraded: bool, answers: Connection) -> None:
    try:
        answers.send(("ok", preflight(app_factory(), degraded)))
    except LayeropsError as exc:
        answers.send(("error", str(exc)))
    except Exception as exc:
        answers.send(("error", f"start-up check failed: {type(exc).__name__}: {exc}"))


def _preflight_in_child(degraded: bool) -> str:
    """`preflight` in a fresh process (same environment), so this one never loads a model."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_preflight_child, args=(degraded, send), name="layerops-preflight")
    child.start()
    send.close()
    try:
        status, text = receive.recv()
    except EOFError:  # it died without answering
        child.join()
        status, text = "error", f"the start-up check process died (exit code {child.exitcode})"
    child.join()
    if status != "ok":
        raise LayeropsError(text)
    return str(text)


def _first_error(exc: ValueError) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    messages = [line for line in lines if not line.startswith("For further information")]
    return messages[-1].split(" [type=")[0] if messages else str(exc)
