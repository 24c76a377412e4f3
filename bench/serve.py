"""Serving benchmark: `layerops serve` beside MLflow's own server and a hand-written reference.

One command trains (or reuses) the reference model — a random forest of 100 trees (max_depth 12)
on a generated 20-feature classification set — and a heavier forest, registers both, then starts
each server on loopback with its default worker count (1 for all three) and with 2 workers:

- `layerops serve` (API key on, input validation, metrics, access log as configured by default);
- `mlflow models serve --env-manager local -m models:/NAME@production`: the registered version
  itself, a standard MLflow model whose python_function loader (layerops') answers labels from
  the same verified bundle (ONNX Runtime when the export passes its parity check, as `layerops
  serve`'s `auto` engine), behind MLflow's own scoring server (its parsing, schema enforcement
  and JSON encoding);
- `bench/reference_server.py`: FastAPI + ONNX Runtime + orjson, no auth, validation or metrics;
  `reference` scores on the event loop, `reference-sync` is the same server with the common `def`
  endpoint that FastAPI runs in its thread pool (default worker count only).

Load comes from wrk (Debian's `wrk`, one thread, a Lua script for the POST body) in its own
process. Printed as markdown: single-row latency at 1 connection, throughput/p50/p99 at 16 and 64
connections, the heavier model at 64 connections with micro-batching on and off
(`LAYEROPS_BATCHING=true|false`), 10,000-row requests in rows/s beside in-process ONNX Runtime on
the same rows, and each server's resident memory (its whole process tree) after the run.

    .venv/bin/python bench/serve.py [--quick] [--duration 10] [--home DIR] [--fresh] [--json out.json]

Every load run is bounded by its duration (wrk -d) and a hard subprocess timeout; every server
start by `--start-timeout`. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
from train_overhead import SPEC  # the same one-forest spec (bench/ is this script's path)

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BIN = Path(sys.executable).parent
API_KEY = "bench-not-a-secret"
HOST = "127.0.0.1"
BATCH_ROWS = 10_000
LAYOUT_TAG = "layerops.layout"
MLFLOW_MODEL_LAYOUT = "mlflow-model/1"
"""A version with this layout is a standard MLflow model (`models:/NAME@ALIAS` serves it)."""
NOISY_CORES = 0.25
"""A run during which other processes used this many cores or more is disturbed: retried."""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}
local file = assert(io.open("{body}", "rb"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class ForestSpec:
    """A benchmark model: a random forest on the generated data set."""

    name: str
    trees: int
    depth: int


REFERENCE_MODEL = ForestSpec("bench_rf100", trees=100, depth=12)
HEAVY_MODEL = ForestSpec("bench_rf300_heavy", trees=300, depth=16)


@dataclass
class Load:
    """One wrk run: counts, latency percentiles, errors and what the load generator cost."""

    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Socket errors, timeouts and non-2xx answers (the latency of a failed request still counts)."""
    wrk_cpu: float
    """CPU seconds wrk used per wall second (1.0 = one full core)."""
    server_cpu: float
    """CPU seconds the server's process tree used per wall second."""
    other_cpu: float = 0.0
    """CPU seconds everything else on the machine used per wall second (noise from other work)."""
    other_top: str = ""
    """The busiest other processes (and hypervisor steal) when `other_cpu` is noticeable."""

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class ServerResult:
    """Every measurement of one server configuration."""

    server: str
    workers: int
    note: str = ""
    loads: dict[str, Load] = field(default_factory=dict)
    rss_mb: float | None = None
    uss_mb: float | None = None
    start_seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Target:
    """How to start one server and what to send it."""

    server: str
    argv: list[str]
    env: dict[str, str]
    path: str
    single_body: Path
    batch_body: Path
    headers: dict[str, str] = field(default_factory=dict)


# -- model preparation ---------------------------------------------------------------------------


def _run(argv: list[str], env: dict[str, str], timeout: float) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


def prepare_models(
    home: Path, rows: int, env: dict[str, str], bin_dir: Path = BIN, *, mlflow_model: bool = True
) -> dict[str, Any]:
    """Train and promote both forests unless a registered production version is already there.

    `bin_dir` holds the `layerops` that trains: an A/B trains with the older build, whose bundles
    both builds read (a newer build's metadata may carry fields an older one refuses).
    `mlflow_model`: a version is reused only if MLflow can serve it (`models:/NAME@production`).
    """
    from layerops.datasets import synthetic_classification
    from layerops.errors import NotFoundError
    from layerops.repository.factory import open_repository
    from layerops.settings import Settings

    home.mkdir(parents=True, exist_ok=True)
    data = home / f"data_{rows}.csv"
    if not data.exists():
        synthetic_classification(rows, features=20, seed=0).round(6).to_csv(data, index=False)
    repo = open_repository(Settings(home=home))
    found: dict[str, Any] = {}
    for spec in (REFERENCE_MODEL, HEAVY_MODEL):
        name = f"{spec.name}_r{rows}"
        try:
            version = repo.resolve_alias(name, "production")
            reused = not mlflow_model or version.tags.get(LAYOUT_TAG) == MLFLOW_MODEL_LAYOUT
        except NotFoundError:
            reused = False
        if not reused:
            spec_path = home / f"{name}.yaml"
            spec_path.write_text(SPEC.format(name=name, data=data, trees=spec.trees, depth=spec.depth))
            started = time.perf_counter()
            layerops = [str(bin_dir / "layerops"), "--home", str(home)]
            _run([*layerops, "train", str(spec_path), "--quiet"], env, timeout=1800)
            latest = repo.list_versions(name)[0].version
            _run([*layerops, "models", "promote", name, "--version", str(latest)], env, timeout=300)
            print(f"trained {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            version = repo.resolve_alias(name, "production")
        bundle = repo.load_bundle(name, "production")
        found[spec.name] = {
            "name": name,
            "version": version,
            "bundle": bundle,
            "spec": spec,
            "reused": reused,
        }
    found["data"] = pd.read_csv(data).drop(columns=["label"])
    found["tracking_uri"] = Settings(home=home).resolved_tracking_uri()
    return found


# -- payloads ------------------------------------------------------------------------------------


def write_bodies(folder: Path, frame: pd.DataFrame) -> dict[str, Path]:
    """Request bodies: one row and 10,000 rows, as row objects and as MLflow's dataframe_split."""
    single = frame.iloc[:1]
    batch = frame.iloc[:BATCH_ROWS]
    bodies = {
        "rows_1": single.to_dict(orient="records")[0],
        "rows_batch": batch.to_dict(orient="records"),
        "split_1": {"dataframe_split": single.to_dict(orient="split", index=False)},
        "split_batch": {"dataframe_split": batch.to_dict(orient="split", index=False)},
    }
    paths = {}
    for key, body in bodies.items():
        paths[key] = folder / f"{key}.json"
        paths[key].write_text(json.dumps(body, separators=(",", ":")))
    return paths


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def post(port: int, path: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """One POST on a fresh connection; (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextlib.contextmanager
def running(target: Target, port: int, log: Path, start_timeout: float) -> Iterator[psutil.Process]:
    """Start the server in its own process group; yield once it answers the single-row body."""
    argv = [part.replace("{port}", str(port)) for part in target.argv]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=target.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        body = target.single_body.read_bytes()
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{target.server} exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target.server} not ready after {start_timeout:.0f} s:\n{_tail(log)}")
            try:
                status, answer = post(port, target.path, body, target.headers, timeout=30)
            except OSError:
                time.sleep(0.25)
                continue
            if status == 200:
                break
            if status not in (502, 503):
                raise RuntimeError(f"{target.server} answered {status}: {answer[:500]!r}")
            time.sleep(0.25)
        yield psutil.Process(proc.pid)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we created, SIGKILL to whatever is left after 20 s."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=20)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _tree(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def tree_cpu(process: psutil.Process) -> float:
    """User + system CPU seconds of the process and its live children."""
    total = 0.0
    for proc in _tree(process):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def busy_cpu_seconds() -> float:
    """Machine-wide non-idle CPU seconds since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def process_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of every process on the machine, with a short description."""
    found = {}
    for proc in psutil.process_iter(["cmdline", "name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        command = " ".join(proc.info["cmdline"] or [proc.info["name"] or "?"])
        found[proc.pid] = (command[-90:], times.user + times.system)
    return found


def top_consumers(before: dict[int, tuple[str, float]], exclude: set[int], wall: float) -> str:
    """The two processes (outside `exclude`) that used the most CPU since `before`, and steal."""
    after = process_cpu()
    used = [
        (cpu - before.get(pid, ("", 0.0))[1], command)
        for pid, (command, cpu) in after.items()
        if pid not in exclude
    ]
    used.sort(reverse=True)
    return "; ".join(f"{cpu / wall:.2f} cores: {command}" for cpu, command in used[:2] if cpu / wall > 0.05)


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most `max_wait` s) until the machine uses < `threshold` cores; return the last load."""
    deadline = time.monotonic() + max_wait
    while True:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        load = busy_cpu_seconds() - before
        if load < threshold or time.monotonic() >= deadline:
            return load


def tree_memory(process: psutil.Process) -> tuple[float, float]:
    """(RSS, USS) of the whole process tree in MiB; USS does not double-count shared pages."""
    rss = uss = 0.0
    for proc in _tree(process):
        with contextlib.suppress(psutil.NoSuchProcess):
            info = proc.memory_full_info()
            rss += info.rss
            uss += info.uss
    return rss / 2**20, uss / 2**20


# -- load ----------------------------------------------------------------------------------------


WRK_PREFIX: list[str] = []
"""Prepended to wrk's command line (e.g. `taskset -c 1`: `ab_serve.py --pin`)."""


def wrk(
    port: int,
    target: Target,
    body: Path,
    connections: int,
    seconds: float,
    server: psutil.Process,
    work: Path,
) -> Load:
    """One wrk run (one thread) against the target; errors are counted, never hidden."""
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
    script = work / f"{body.stem}.lua"
    script.write_text(WRK_SCRIPT.format(headers=headers, body=body))
    argv = [
        *WRK_PREFIX, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "--latency",
        "-s", str(script), f"http://{HOST}:{port}{target.path}",
    ]  # fmt: skip
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = tree_cpu(server)
    processes_before = process_cpu()
    busy_before = busy_cpu_seconds()
    steal_before = getattr(psutil.cpu_times(), "steal", 0.0)
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90, check=False)
    wall = time.perf_counter() - started
    server_after = tree_cpu(server)
    busy = busy_cpu_seconds() - busy_before
    steal = getattr(psutil.cpu_times(), "steal", 0.0) - steal_before
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk failed ({result.returncode}): {result.stdout[-1500:]} {result.stderr[-1500:]}"
        )
    raw = json.loads(lines[-1][len("BENCH ") :])
    wrk_cpu = (after_children.ru_utime + after_children.ru_stime) - (
        before_children.ru_utime + before_children.ru_stime
    )
    other = max(0.0, busy - wrk_cpu - (server_after - server_before)) / wall
    other_top = ""
    if other >= 0.1:
        exclude = {os.getpid(), *(p.pid for p in _tree(server))}
        other_top = top_consumers(processes_before, exclude, wall)
        if steal / wall > 0.05:
            other_top += f"; hypervisor steal {steal / wall:.2f} cores"
    return Load(
        connections=connections,
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=sum(raw[k] for k in ("connect", "read", "write", "status", "timeout")),
        wrk_cpu=wrk_cpu / wall,
        server_cpu=(server_after - server_before) / wall,
        other_cpu=other,
        other_top=other_top,
    )


def measure(
    target: Target,
    workers: int,
    scenarios: dict[str, tuple[str, int]],
    args: argparse.Namespace,
    work: Path,
    note: str = "",
) -> ServerResult:
    """Start `target`, warm it, run every scenario (name -> (body kind, connections)), stop it."""
    result = ServerResult(target.server, workers, note)
    background = wait_for_quiet(args.quiet_wait)
    if background >= 0.3:
        print(f"  machine still busy ({background:.2f} cores) after {args.quiet_wait:g} s", file=sys.stderr)
    port = free_port()
    log = work / f"{target.server.replace(' ', '_')}_{workers}_{int(time.time())}.log"
    print(f"  {target.server} × {workers} worker(s) {note}".rstrip(), file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        with running(target, port, log, args.start_timeout) as server:
            result.start_seconds = time.perf_counter() - started
            wrk(port, target, target.single_body, 16, args.warmup, server, work)  # warm every worker
            for name, (kind, connections) in scenarios.items():
                body = target.batch_body if kind == "batch" else target.single_body
                attempts: list[Load] = []
                for _ in range(1 + args.retries):  # a run disturbed by other work is done again
                    load = wrk(port, target, body, connections, args.duration, server, work)
                    attempts.append(load)
                    print(
                        f"    {name:>6}: {load.rps:9.1f} req/s  p50 {load.p50_ms:8.2f} ms  "
                        f"p99 {load.p99_ms:8.2f} ms  errors {load.errors}  other {load.other_cpu:.2f} cores",
                        file=sys.stderr,
                        flush=True,
                    )
                    if load.other_cpu < NOISY_CORES:
                        break
                    wait_for_quiet(args.quiet_wait)
                result.loads[name] = min(attempts, key=lambda attempt: attempt.other_cpu)
            result.rss_mb, result.uss_mb = tree_memory(server)
    except Exception as exc:
        result.error = str(exc).splitlines()[0][:300]
        print(f"    FAILED: {exc}", file=sys.stderr, flush=True)
    return result


# -- in-process floors ---------------------------------------------------------------------------


def _session(onnx_model: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as every server here runs it
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def _median_seconds(func: Any, repeats: int, budget: float = 20.0) -> float:
    func()
    times: list[float] = []
    deadline = time.monotonic() + budget
    while len(times) < repeats and time.monotonic() < deadline:
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def raw_ort_rows_per_second(bundle: Any, frame: pd.DataFrame, repeats: int) -> float:
    """ONNX Runtime on the same rows, in process: arrays ready, no HTTP, no JSON."""
    from layerops.bundle.onnx_io import PROBABILITIES_OUTPUT, onnx_feeds

    session = _session(bundle.onnx_model)
    feeds = onnx_feeds(frame, list(bundle.metadata.features), session)
    return len(frame) / _median_seconds(lambda: session.run([PROBABILITIES_OUTPUT], feeds), repeats)


def single_row_costs(bundle: Any, frame: pd.DataFrame) -> dict[str, float]:
    """In-process single-row cost (ms) of the native pipeline and of its ONNX export."""
    from layerops.bundle.onnx_io import PROBABILITIES_OUTPUT, onnx_feeds

    row = frame.iloc[:1]
    session = _session(bundle.onnx_model)
    feeds = onnx_feeds(row, list(bundle.metadata.features), session)
    return {
        "native_ms": 1000 * _median_seconds(lambda: bundle.model.predict_proba(row), 30),
        "onnx_ms": 1000 * _median_seconds(lambda: session.run([PROBABILITIES_OUTPUT], feeds), 300),
    }


# -- report --------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _cell(result: ServerResult, scenario: str, attr: str, digits: int = 1) -> str:
    load = result.loads.get(scenario)
    if load is None:
        return "–"
    text = _f(load.rps if attr == "rps" else getattr(load, attr), digits)
    return f"{text} ⚠{load.errors}" if load.errors else text


def machine() -> str:
    """CPU model, cores, memory, OS and the versions that matter."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in ("layerops", "mlflow", "onnxruntime", "scikit-learn", "fastapi", "uvicorn", "orjson"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{cpu}, {psutil.cpu_count()} logical cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"{platform.platform()}; Python {platform.python_version()}; "
        f"{(wrk_version.stdout or wrk_version.stderr).splitlines()[0]}; {', '.join(versions)}; git {commit}"
    )


def report(results: list[ServerResult], heavy: list[ServerResult], floors: dict[str, Any], args: Any) -> str:
    """The markdown report: the main table, the heavier model, 10,000 rows, ratios and goals."""
    out = [
        f"## Serving benchmark — {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"Machine: {machine()}",
        "",
        f"Command: `{shlex.join([Path(sys.executable).name, *sys.argv])}` "
        f"(wrk runs of {args.duration:g} s, 1 wrk thread, "
        f"after a {args.warmup:g} s warm-up at 16 connections; a run during which other processes used "
        f"≥ {NOISY_CORES} cores is retried up to {args.retries} times)",
        "",
        f"Model: random forest, {REFERENCE_MODEL.trees} trees, max_depth {REFERENCE_MODEL.depth}, "
        f"trained on {args.rows:,} generated rows × 20 features; single-row body ≈ "
        f"{floors['single_body_bytes']} B, 10,000-row body ≈ {floors['batch_body_bytes'] / 2**20:.1f} MiB.",
        "",
        "layerops runs with an API key (`X-API-Key`), its default middleware and metrics, "
        "`LAYEROPS_BATCHING` at the server default; MLflow gets `dataframe_split` bodies, the others "
        "row objects.",
        "",
        *_noise_warning([*results, *heavy]),
        "| server | workers | 1 conn p50 ms | 1 conn p99 ms | 16 conn req/s | 16 p50 ms | 16 p99 ms "
        "| 64 conn req/s | 64 p50 ms | 64 p99 ms | 10k rows/s | RSS MiB (USS) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        if r.error:
            out.append(f"| {r.server} | {r.workers} | failed: {r.error} |" + " |" * 9)
            continue
        batch = r.loads.get("batch")
        rows_s = _f(batch.rps * BATCH_ROWS, 0) if batch else "–"
        out.append(
            f"| {r.server} | {r.workers} | {_cell(r, 'c1', 'p50_ms', 2)} | {_cell(r, 'c1', 'p99_ms', 2)} "
            f"| {_cell(r, 'c16', 'rps')} | {_cell(r, 'c16', 'p50_ms', 2)} | {_cell(r, 'c16', 'p99_ms', 2)} "
            f"| {_cell(r, 'c64', 'rps')} | {_cell(r, 'c64', 'p50_ms', 2)} | {_cell(r, 'c64', 'p99_ms', 2)} "
            f"| {rows_s} | {_f(r.rss_mb, 0)} ({_f(r.uss_mb, 0)}) |"
        )
    out += ["", "⚠n: n requests failed (socket error, timeout or non-2xx); their latencies still count.", ""]

    costs = floors["heavy_costs"]
    out += [
        f"### Heavier model at 64 connections: {HEAVY_MODEL.trees} trees, max_depth {HEAVY_MODEL.depth}",
        "",
        f"In-process single-row cost: native scikit-learn {costs['native_ms']:.2f} ms, ONNX Runtime "
        f"{costs['onnx_ms']:.3f} ms. Only the native engine is above 1 ms, so the ≥ 1 ms comparison runs "
        "`layerops serve --engine native`; the ONNX rows show the same switch on the default engine.",
        "",
        "| engine | LAYEROPS_BATCHING | req/s | p50 ms | p99 ms | RSS MiB |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for r in heavy:
        if r.error:
            out.append(f"| {r.note} | failed: {r.error} | | | | |")
            continue
        engine, batching = r.note.split(",")
        out.append(
            f"| {engine} | {batching} | {_cell(r, 'c64', 'rps')} | {_cell(r, 'c64', 'p50_ms', 2)} "
            f"| {_cell(r, 'c64', 'p99_ms', 2)} | {_f(r.rss_mb, 0)} |"
        )

    raw = floors["raw_ort_rows_s"]
    out += [
        "",
        f"### 10,000-row request (1 connection) vs in-process ONNX Runtime ({_f(raw, 0)} rows/s, 1 thread)",
        "",
        "| path | rows/s | share of raw ORT |",
        "|---|--:|--:|",
    ]
    for r in [*results, *floors["extra_batch"]]:
        batch = r.loads.get("batch")
        if batch and not r.error:
            label = f"{r.server} × {r.workers}" + (f" ({r.note})" if r.note else "")
            out.append(f"| {label} | {_f(batch.rps * BATCH_ROWS, 0)} | {batch.rps * BATCH_ROWS / raw:.1%} |")

    out += ["", *ratios_and_goals(results, heavy, raw), "", *diagnostics([*results, *heavy])]
    return "\n".join(out)


def _noise_warning(results: list[ServerResult]) -> list[str]:
    worst = max((load.other_cpu for r in results for load in r.loads.values()), default=0.0)
    if worst < NOISY_CORES:
        return []
    sources = sorted(
        {
            load.other_top
            for r in results
            for load in r.loads.values()
            if load.other_cpu >= NOISY_CORES and load.other_top
        }
    )
    return [
        f"⚠ Other processes used up to {worst:.2f} cores during some runs (see the CPU table): "
        "those numbers are disturbed." + (f" Busiest: {' | '.join(sources[:4])}" if sources else ""),
        "",
    ]


def _find(results: list[ServerResult], server: str, workers: int) -> ServerResult | None:
    return next((r for r in results if r.server == server and r.workers == workers and not r.error), None)


def _load(result: ServerResult | None, scenario: str) -> Load | None:
    return result.loads.get(scenario) if result else None


def ratios_and_goals(results: list[ServerResult], heavy: list[ServerResult], raw_rows_s: float) -> list[str]:
    """layerops ÷ MLflow and ÷ reference per worker count, then the issue's goals."""
    out = [
        "### Ratios (layerops ÷ other; latency ratios are other ÷ layerops, so > 1 means layerops is better)",
        "",
        "| workers | vs | 1 conn p50 | 16 conn req/s | 64 conn req/s | 64 conn p99 | 10k rows/s |",
        "|--:|---|--:|--:|--:|--:|--:|",
    ]
    for workers in (1, 2):
        ours = _find(results, "layerops", workers)
        for other_name in ("mlflow", "reference", "reference-sync"):
            other = _find(results, other_name, workers)
            if other is None:
                continue
            cells = []
            for scenario, attr, inverse in (
                ("c1", "p50_ms", True),
                ("c16", "rps", False),
                ("c64", "rps", False),
                ("c64", "p99_ms", True),
                ("batch", "rps", False),
            ):
                a, b = _load(ours, scenario), _load(other, scenario)
                if a is None or b is None:
                    cells.append("–")
                    continue
                x, y = (a.rps, b.rps) if attr == "rps" else (getattr(a, attr), getattr(b, attr))
                ratio = (y / x) if inverse else (x / y if y else float("inf"))
                cells.append(f"{ratio:.2f}×")
            out.append(f"| {workers} | {other_name} | " + " | ".join(cells) + " |")

    goals: list[tuple[str, float | None, str, bool | None]] = []
    for workers in (1, 2):
        ours = _load(_find(results, "layerops", workers), "c16")
        mlflow = _load(_find(results, "mlflow", workers), "c16")
        ref = _load(_find(results, "reference", workers), "c16")
        if ours and mlflow:
            value = ours.rps / mlflow.rps
            goals.append((f"16 conn req/s vs MLflow ({workers} w)", value, "≥ 30×", value >= 30))
        if ours and ref:
            value = ours.rps / ref.rps
            goals.append((f"16 conn req/s vs reference ({workers} w)", value, "≥ 0.8×", value >= 0.8))
    single = _load(_find(results, "layerops", 1), "c1")
    if single:
        goals.append(("single-row p50 (1 conn, ms)", single.p50_ms, "≤ 1 ms", single.p50_ms <= 1.0))
    for workers in (1, 2):
        c64 = _load(_find(results, "layerops", workers), "c64")
        if c64:
            value = c64.p99_ms / c64.p50_ms
            goals.append((f"64 conn p99 ÷ p50 ({workers} w)", value, "≤ 3×", value <= 3))
    on = next((_load(r, "c64") for r in heavy if r.note == "native,true" and not r.error), None)
    off = next((_load(r, "c64") for r in heavy if r.note == "native,false" and not r.error), None)
    if on and off:
        value = on.rps / off.rps
        goals.append(("heavier model: batching on ÷ off (req/s)", value, "≥ 2×", value >= 2))
    batch = _load(_find(results, "layerops", 1), "batch")
    if batch:
        value = batch.rps * BATCH_ROWS / raw_rows_s
        goals.append(("10k rows/s ÷ raw in-process ORT", value, "≥ 0.5", value >= 0.5))
    out += ["", "### Goals", "", "| goal | measured | target | met |", "|---|--:|---|---|"]
    for name, value, target, met in goals:
        out.append(f"| {name} | {_f(value, 2)} | {target} | {'yes' if met else '**no**'} |")
    return out


def diagnostics(results: list[ServerResult]) -> list[str]:
    """CPU use of the server tree and of wrk during each run (is the load generator a bottleneck?)."""
    out = [
        "### CPU during the runs (cores busy: server tree / wrk / everything else; "
        "server CPU ms per request)",
        "",
        "| server | workers | note | c1 | c16 | c64 | 10k |",
        "|---|--:|---|---|---|---|---|",
    ]
    for r in results:
        if r.error:
            continue
        cells = []
        for scenario in ("c1", "c16", "c64", "batch"):
            load = r.loads.get(scenario)
            if load is None:
                cells.append("–")
                continue
            per_request = 1000 * load.server_cpu * load.seconds / max(load.requests, 1)
            cells.append(
                f"{load.server_cpu:.2f} / {load.wrk_cpu:.2f} / {load.other_cpu:.2f}; {per_request:.2f} ms"
            )
        out.append(f"| {r.server} | {r.workers} | {r.note} | " + " | ".join(cells) + " |")
    return out


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    """Prepare models and bodies, run every server configuration, print the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 s wrk runs, 1 s warm-up")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the generated training set")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "layerops-bench-serve")
    parser.add_argument("--fresh", action="store_true", help="delete --home and train again")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--retries", type=int, default=2, help="re-runs of a run disturbed by other work")
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["mlflow", "reference", "reference-sync", "layerops"],
        help="which servers to run (the heavier model and /invocations runs need layerops)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="max seconds to wait for an idle machine per server"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if args.fresh:
        shutil.rmtree(args.home, ignore_errors=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    for key in [k for k in env if k.startswith(("LAYEROPS_", "MLFLOW_"))]:
        del env[key]  # the servers' defaults, not this shell's

    started = time.perf_counter()
    models = prepare_models(args.home, args.rows, env)
    ref, heavy_model, frame = models[REFERENCE_MODEL.name], models[HEAVY_MODEL.name], models["data"]
    work = Path(tempfile.mkdtemp(prefix="layerops-bench-serve-"))
    bodies = write_bodies(work, frame)
    onnx_path = work / "reference.onnx"
    onnx_path.write_bytes(ref["bundle"].onnx_model)
    floors: dict[str, Any] = {
        "raw_ort_rows_s": raw_ort_rows_per_second(ref["bundle"], frame.iloc[:BATCH_ROWS], repeats=15),
        "heavy_costs": single_row_costs(heavy_model["bundle"], frame),
        "single_body_bytes": bodies["rows_1"].stat().st_size,
        "batch_body_bytes": bodies["rows_batch"].stat().st_size,
        "extra_batch": [],
    }

    def layerops_target(
        model: dict[str, Any], workers: int, extra_env: dict[str, str], engine: str
    ) -> Target:
        name = model["name"]
        argv = [
            str(BIN / "layerops"), "--home", str(args.home), "serve", "--model", f"{name}@production",
            "--port", "{port}", "--workers", str(workers), "--engine", engine,
        ]  # fmt: skip
        return Target(
            "layerops", argv, {**env, "LAYEROPS_API_KEYS": API_KEY, **extra_env}, f"/models/{name}/predict",
            bodies["rows_1"], bodies["rows_batch"], {"X-API-Key": API_KEY},
        )  # fmt: skip

    def targets(workers: int) -> list[Target]:
        mlflow_argv = [
            str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{ref['name']}@production",
            "--env-manager", "local", "-h", HOST, "-p", "{port}", "--workers", str(workers),
        ]  # fmt: skip
        mlflow_env = {**env, "MLFLOW_TRACKING_URI": models["tracking_uri"]}
        reference_argv = [
            str(BIN / "uvicorn"), "--app-dir", str(BENCH_DIR), "--factory", "reference_server:app_from_env",
            "--host", HOST, "--port", "{port}", "--workers", str(workers), "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
        classes = ",".join(ref["bundle"].metadata.classes or [])
        reference_env = {**env, "REFERENCE_ONNX": str(onnx_path), "REFERENCE_CLASSES": classes}
        sync_env = {**reference_env, "REFERENCE_ENDPOINT": "sync"}
        return [
            Target(
                "mlflow", mlflow_argv, mlflow_env, "/invocations", bodies["split_1"], bodies["split_batch"]
            ),
            Target(
                "reference", reference_argv, reference_env, "/predict", bodies["rows_1"], bodies["rows_batch"]
            ),
            *(
                [
                    Target(
                        "reference-sync",
                        reference_argv,
                        sync_env,
                        "/predict",
                        bodies["rows_1"],
                        bodies["rows_batch"],
                    )
                ]
                if workers == 1
                else []
            ),
            layerops_target(ref, workers, {}, "auto"),
        ]

    single_scenarios = {"c1": ("single", 1), "c16": ("single", 16), "c64": ("single", 64)}
    results: list[ServerResult] = []
    for workers in args.workers:
        for target in [t for t in targets(workers) if t.server in args.servers]:
            scenarios = dict(single_scenarios)
            if workers == 1:
                scenarios["batch"] = ("batch", 1)
            results.append(measure(target, workers, scenarios, args, work))

    heavy: list[ServerResult] = []
    if "layerops" in args.servers:
        invocations = layerops_target(ref, 1, {}, "auto")
        invocations = Target(
            "layerops", invocations.argv, invocations.env, "/invocations?model=" + ref["name"],
            bodies["split_1"], bodies["split_batch"], invocations.headers,
        )  # fmt: skip
        note = "/invocations, dataframe_split"
        floors["extra_batch"].append(measure(invocations, 1, {"batch": ("batch", 1)}, args, work, note=note))
        for engine in ("native", "onnx"):
            for batching in ("true", "false"):
                target = layerops_target(heavy_model, 1, {"LAYEROPS_BATCHING": batching}, engine)
                note = f"{engine},{batching}"
                heavy.append(measure(target, 1, {"c64": ("single", 64)}, args, work, note=note))

    print(report(results, heavy, floors, args))
    print(f"\n_Total run time {time.perf_counter() - started:.0f} s; server logs in {work}._")
    if args.json:
        raw = {
            "results": [asdict(r) for r in results],
            "heavy": [asdict(r) for r in heavy],
            "extra_batch": [asdict(r) for r in floors["extra_batch"]],
            "raw_ort_rows_s": floors["raw_ort_rows_s"],
            "heavy_costs": floors["heavy_costs"],
        }
        args.json.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
