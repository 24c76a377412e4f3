"""In-process A/B of the serving path: CPU time per request through the whole ASGI app, two builds.

`bench/ab_serve.py` measures over loopback with wrk, which on a shared 2-core machine swings
±20 % from run to run. This drives the app itself — the ASGI callable `layerops serve` runs, every
middleware included, lifespan started — with single-row `POST /models/{name}/predict` requests at
1 and 16 in flight, and reports CPU microseconds per request (`time.process_time`, which other
processes' load barely moves) and wall requests/s. The two builds — `--before`, a checkout with its
own `.venv`, and this checkout — run as fresh processes in alternating rounds; the report gives
medians and after ÷ before. The model is bench/serve.py's reference forest (train it once with
`bench/serve.py` or `bench/ab_serve.py`; both reuse `--home`).

    .venv/bin/python bench/asgi_ab.py --before /tmp/before [--rounds 7] [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEY = "bench-not-a-secret"
MODEL = "bench_rf100_r20000"
BODY = json.dumps({f"f{i:02d}": 0.1 * i for i in range(20)}).encode()


def _build_app(home: Path) -> Any:
    """The app `layerops serve` runs, built the way each build builds it."""
    os.environ.update({"LAYEROPS_HOME": str(home), "LAYEROPS_MODELS": f"{MODEL}@production"})
    os.environ.update({"LAYEROPS_API_KEYS": KEY, "LAYEROPS_RELOAD_INTERVAL_SECONDS": "0"})
    from layerops.cli import serve

    if hasattr(serve, "app_from_settings"):  # after the delivery-core issue
        from layerops.delivery.settings import ServeSettings

        return serve.app_from_settings(ServeSettings())
    return serve.app_factory()  # before: settings from the environment


async def _lifespan(app: Any, state: dict[str, Any]) -> None:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    asyncio.get_running_loop().create_task(app(scope, inbox.get, outbox.put))
    message = await outbox.get()
    assert message["type"] == "lifespan.startup.complete", message


async def _request(app: Any, state: dict[str, Any]) -> int:
    path = f"/models/{MODEL}/predict"
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()), (b"x-api-key", KEY.encode()),
        ],
        "state": dict(state),
    }  # fmt: skip
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # never a disconnect while the answer is pending
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _drive(app: Any, state: dict[str, Any], requests: int, concurrency: int) -> dict[str, float]:
    async def worker(count: int) -> None:
        for _ in range(count):
            status = await _request(app, state)
            assert status == 200, status

    await asyncio.gather(*(worker(requests // concurrency // 10) for _ in range(concurrency)))  # warm
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = requests // concurrency * concurrency
    return {"cpu_us": cpu / done * 1e6, "rps": done / wall}


def side(home: Path, requests: int) -> None:
    """One build's measurement (run in that build's Python), printed as JSON."""
    app = _build_app(home)

    async def main() -> dict[str, Any]:
        state: dict[str, Any] = {}
        await _lifespan(app, state)
        return {f"c{c}": await _drive(app, state, requests, c) for c in (1, 16)}

    print(json.dumps(asyncio.run(main())))


def orchestrate(args: argparse.Namespace) -> None:
    """Alternate the builds round by round; print every round, medians and after ÷ before."""
    pythons = {"before": args.before.resolve() / ".venv" / "bin" / "python", "after": Path(sys.executable)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAYEROPS_", "MLFLOW_"))}
    rows: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for index in range(args.rounds):
        for name in list(pythons) if index % 2 == 0 else list(reversed(pythons)):
            argv = [str(pythons[name]), __file__, "--side", "--home", str(args.home)]
            argv += ["--requests", str(args.requests)]
            out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
            if out.returncode != 0:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            rows[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {index + 1} {name}: {rows[name][-1]}", file=sys.stderr, flush=True)
    print(report(rows, args))


def report(rows: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    """A markdown table: each round, the medians, after ÷ before (> 1: after is better)."""
    columns = [("c1", "cpu_us", False), ("c1", "rps", True), ("c16", "cpu_us", False), ("c16", "rps", True)]
    lines = [
        f"`bench/asgi_ab.py --before {args.before} --rounds {args.rounds} --requests {args.requests}`\n",
        "| build | round | 1 in flight: CPU µs/req | req/s | 16 in flight: CPU µs/req | req/s |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    medians = {}
    for name, results in rows.items():
        for index, result in enumerate(results, 1):
            cells = " | ".join(f"{result[c][k]:,.1f}" for c, k, _ in columns)
            lines.append(f"| {name} | {index} | {cells} |")
        medians[name] = [statistics.median(r[c][k] for r in results) for c, k, _ in columns]
        lines.append(f"| {name} | median | " + " | ".join(f"**{v:,.1f}**" for v in medians[name]) + " |")
    ratios = [
        (a / b if higher else b / a)
        for (_, _, higher), b, a in zip(columns, medians["before"], medians["after"], strict=True)
    ]
    lines.append("| after ÷ before | (> 1 better) | " + " | ".join(f"{r:.3f}" for r in ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, help="checkout whose .venv is the 'before' build")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "layerops-bench-serve")
    parser.add_argument("--side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.home, args.requests)
    elif args.before is None:
        parser.error("--before is required")
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
