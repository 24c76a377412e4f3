"""`layerops serve`: run the delivery layer under uvicorn, configured by flags and LAYEROPS_* vars.

The settings are built once here; with several workers uvicorn's supervisor pickles them into
each worker process, which builds its own app from them (`app_from_settings`).
"""

from __future__ import annotations

import errno
import functools
import logging
import multiprocessing
import signal
import socket
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Annotated, Any

import typer

from layerops.errors import LayeropsError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from layerops.delivery.settings import ServeSettings
    from layerops.settings import Settings


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
    prediction_log: Annotated[
        str | None,
        typer.Option(
            help="Where answers are logged: a folder (Parquet), postgresql://..., or off "
            "(env: LAYEROPS_PREDICTION_LOG; default Parquet under <home>/predictions)"
        ),
    ] = None,
    drift_interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between drift checks of the recent logged rows; 0 disables "
            "(env: LAYEROPS_DRIFT_INTERVAL_SECONDS; default 60)"
        ),
    ] = None,
    traffic: Annotated[
        str | None,
        typer.Option(
            help="Traffic policies (canary, A/B, shadow) per model, YAML; re-read when it changes "
            "(env: LAYEROPS_TRAFFIC_FILE; see README 'Releases')"
        ),
    ] = None,
    start_degraded: Annotated[
        bool, typer.Option("--start-degraded", help="Start even if a model fails to load")
    ] = False,
) -> None:
    """Serve models over HTTP: native REST, KServe V2, MLflow /invocations, health and metrics."""
    settings: Settings = ctx.obj
    flags = {
        "models": ",".join(model) if model else None,
        "host": host,
        "port": port,
        "workers": workers,
        "engine": engine,
        "reload_interval_seconds": reload_interval,
        "header_timeout_seconds": header_timeout,
        "api_key_file": api_key_file,
        "start_degraded": start_degraded or None,
        "batching": batching,
        "prediction_log": prediction_log,
        "drift_interval_seconds": drift_interval,
        "traffic_file": traffic,
    }
    serve_settings = serve_settings_from(settings, {k: v for k, v in flags.items() if v is not None})
    # The port first: a busy one fails in milliseconds, before any model loads, and nothing
    # claims to be serving on a port it does not hold.
    listener = bind(serve_settings.host, serve_settings.port)
    # Preflight: the initiating phase runs first, so a model that cannot load stops start-up with
    # one clear line. One worker then serves this very app; several build their own, so their
    # supervisor checks in a child process and stays small (it would hold every model for nothing).
    if serve_settings.workers == 1:
        app = app_from_settings(serve_settings)
        served = preflight(app)
    else:
        served = _preflight_in_child(serve_settings)
    typer.echo(
        f"layerops serving {served or 'no model yet'} on http://{serve_settings.host}:{serve_settings.port} "
        f"with {serve_settings.workers} worker(s); docs at /docs; "
        f"prediction log: {_log_target(serve_settings)}"
        + (f"; traffic policies: {serve_settings.traffic_file}" if serve_settings.traffic_file else ""),
        err=True,
    )
    # uvicorn shuts down gracefully on SIGTERM (stop accepting, finish in-flight requests), then
    # re-raises the signal to the handler in place before it started; with the default handler
    # the process would end as "killed by SIGTERM". A completed graceful shutdown exits 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    run_server(serve_settings, app if serve_settings.workers == 1 else None, listener)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` for uvicorn to listen on (`LayeropsError` when it is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        reason = exc.strerror or str(exc)
        hint = "; choose another with --port or LAYEROPS_PORT" if exc.errno == errno.EADDRINUSE else ""
        raise LayeropsError(f"cannot serve on {host}:{port}: {reason}{hint}") from None
    listener.set_inheritable(True)  # several workers share it
    return listener


def _log_target(settings: ServeSettings) -> str:
    """Where answers are logged, for the start-up line (no password)."""
    from layerops.monitoring.store import redact

    if not settings.logs_predictions():
        return "off"
    return (
        redact(settings.prediction_log)
        if settings.prediction_log.strip()
        else str(settings.home / "predictions")
    )


def serve_settings_from(settings: Settings, flags: dict[str, Any]) -> ServeSettings:
    """The server settings: `LAYEROPS_*` variables, the global options in `settings`, then `flags`."""
    from pydantic import ValidationError

    from layerops.delivery.settings import ServeSettings
    from layerops.settings import describe_invalid

    chosen = settings.model_dump(
        include={"home", "tracking_uri", "registry_uri", "artifact_root", "log_level"}
    )
    try:
        return ServeSettings(**chosen, **flags)
    except ValidationError as exc:
        raise LayeropsError(describe_invalid(exc)) from None
    except ValueError as exc:
        raise LayeropsError(f"invalid server setting: {_first_error(exc)}") from None


def app_from_settings(settings: ServeSettings) -> FastAPI:
    """The app for `settings` (called here for one worker, in each worker process for several)."""
    from layerops.delivery.app import create_app
    from layerops.delivery.runtime import build_runtime
    from layerops.repository.factory import open_repository

    logging.getLogger("layerops").setLevel(settings.log_level)
    return create_app(build_runtime(settings, open_repository(settings)))


def run_server(settings: ServeSettings, app: FastAPI | None, listener: socket.socket | None = None) -> None:
    """Serve `app`, or with several workers one app per worker process built from `settings`,
    on `listener` (a socket `bind` returned; default: one bound here).

    uvicorn's `run()` insists on an import string for workers, which would hand the settings over
    through the environment; its supervisor takes any picklable factory, so each worker receives
    the settings object itself.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from layerops.delivery.http_protocol import header_timeout_protocol

    config = uvicorn.Config(
        app if app is not None else functools.partial(app_from_settings, settings),
        factory=app is None,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # A protocol factory, not a class: uvicorn calls it like one, and it pickles into workers.
        http=header_timeout_protocol(settings.header_timeout_seconds),  # type: ignore[arg-type]
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=max(5, int(settings.request_timeout_seconds) + 5),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    sockets = [listener if listener is not None else bind(settings.host, settings.port)]
    if settings.workers > 1:
        Multiprocess(config, sockets=sockets).run()
        return
    server.run(sockets=sockets)
    if not server.started:
        raise LayeropsError(f"could not start the server on {settings.host}:{settings.port}")


def preflight(app: FastAPI) -> str:
    """Run `app`'s initiating phase now: its models, then its traffic policies (raises
    `LayeropsError`); describe what it serves."""
    runtime = app.state.runtime
    runtime.start()
    return ", ".join(f"{m.name} v{m.version} ({m.engine.name})" for m in runtime.registry.models())


def _preflight_child(settings: ServeSettings, answers: Connection) -> None:
    try:
        answers.send(("ok", preflight(app_from_settings(settings))))
    except LayeropsError as exc:
        answers.send(("error", str(exc)))
    except Exception as exc:
        answers.send(("error", f"start-up check failed: {type(exc).__name__}: {exc}"))


def _preflight_in_child(settings: ServeSettings) -> str:
    """`preflight` in a fresh process, so this one never loads a model."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_preflight_child, args=(settings, send), name="layerops-preflight")
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
