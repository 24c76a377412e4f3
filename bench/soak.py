"""Soak test: `layerops serve` under steady load while an alias moves and the server hot-reloads.

One command trains two small models into a fresh temporary home (iris classification and the
generated shipping regression, from the `examples/*.yaml` specs cut down to one candidate),
promotes both to `production` and starts `layerops serve` on a free loopback port with an API key,
an admin key and `LAYEROPS_RELOAD_INTERVAL_SECONDS=1`. After a warm-up, wrk (one thread, its own
process) sends `--connections` connections of single-row requests for `--duration` seconds,
alternating between `/models/iris/predict` and `/models/shipping/predict`. During that run:

- a second iris version is trained (`layerops train`, its own process, started with the load:
  `--train-at` moves it, as a fraction of the run) and promoted to `production` through the
  repository API at half the run, or as soon as it is trained if that is later, so the server's
  1 s alias poll loads, checks and swaps it in under load. One training takes 20-50 s on a busy
  2-core machine, so it starts with the load; `--quick` (15 s) trains it before the load;
- `POST /admin/reload` is called with the admin key at 25 %, 60 %, 75 % and 90 % of the run (not
  right after the promotion: the swap is left to the alias poll).

Printed: throughput, p50/p99 latency, non-2xx responses (by status, with a sample body), socket
errors and timeouts, the server's RSS (its whole process tree) after the warm-up and at the end,
which model versions answered, a timeline, and the goals. The exit status is 1 when a goal is
missed: no failed request (non-2xx + socket errors + timeouts = 0), RSS growth under 10 %, and the
scenario's own checks (iris v2 answered during the run and is served at the end, every admin
reload answered 200).

    .venv/bin/python bench/soak.py [--duration 60] [--connections 64] [--quick] [--train-at 0] [--keep]

Every step is bounded: wrk by -d plus a hard timeout, every subprocess and HTTP call by a timeout,
and the server is always stopped (SIGTERM to its process group, SIGKILL after 20 s). Only
127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

import psutil
import yaml
from serve import (  # the serving benchmark's helpers (bench/ is this script's path)
    BIN,
    HOST,
    ROOT,
    Target,
    busy_cpu_seconds,
    free_port,
    post,
    process_cpu,
    running,
    top_consumers,
    tree_cpu,
    tree_memory,
    wait_for_quiet,
)

API_KEY = "soak-user-not-a-secret"
ADMIN_KEY = "soak-admin-not-a-secret"
RELOAD_INTERVAL_SECONDS = 1
RSS_GROWTH_GOAL = 0.10
"""The largest tolerated growth of the server tree's RSS from after warm-up to the end."""
WRK_TIMEOUT_SECONDS = 10
"""wrk counts a request slower than this as a timeout (the server's own limit is 30 s)."""
ADMIN_RELOADS_AT = (0.25, 0.6, 0.75, 0.9)
"""Fractions of the run at which `/admin/reload` is called."""
SHIPPING_ROWS = 5000

WRK_SCRIPT = Template(
    """
-- Alternates iris and shipping requests; counts non-2xx answers by status and answers by
-- model version (X-Model-Name / X-Model-Version) with the time (epoch s) they were first and
-- last seen.
local threads = {}
local requests = {}
local sent = 0
counts, firsts, lasts, samples = {}, {}, {}, {}

setup = function(thread)
  table.insert(threads, thread)
end

local function slurp(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

local function headers()
  return {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $key"}
end

init = function(args)
  requests[1] = wrk.format("POST", "/models/iris/predict", headers(), slurp("$iris"))
  requests[2] = wrk.format("POST", "/models/shipping/predict", headers(), slurp("$shipping"))
end

request = function()
  sent = sent + 1
  return requests[sent % 2 + 1]
end

-- Flat tables only: wrk's thread:get copies nested tables badly (it crashes).
local function count(key, now, sample)
  if counts[key] == nil then
    counts[key], firsts[key], samples[key] = 0, now, sample
  end
  counts[key] = counts[key] + 1
  lasts[key] = now
end

response = function(status, hdrs, body)
  local now = os.time()
  if status < 200 or status > 299 then
    count("failed:" .. status, now, (string.gsub(string.sub(body or "", 1, 300), "%s+", " ")))
  end
  local name = hdrs["x-model-name"] or hdrs["X-Model-Name"] or "-"
  local version = hdrs["x-model-version"] or hdrs["X-Model-Version"] or "-"
  count("served:" .. name .. "@" .. version, now, "")
end

done = function(summary, latency, reqs)
  local e = summary.errors
  io.write(string.format(
    'SOAK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
  for _, thread in ipairs(threads) do
    local c, f, l, s = thread:get("counts"), thread:get("firsts"), thread:get("lasts"), thread:get("samples")
    for key, n in pairs(c) do
      io.write(string.format("SOAK_COUNT %s %d %d %d %s\\n", key, n, f[key], l[key], s[key]))
    end
  end
end
"""
)


@dataclass
class Tally:
    """How many answers of one kind (a failing status, or a model version) and when (s into the run)."""

    count: int
    first: float
    last: float
    sample: str = ""


@dataclass
class WrkResult:
    """One wrk run: counts, latency, errors by kind, and who answered."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    connect: int
    read: int
    write: int
    timeout: int
    failed_by_status: dict[str, Tally]
    """Non-2xx answers by status code."""
    served: dict[str, Tally]
    """Answers by `name@version` (from the X-Model-Name / X-Model-Version headers)."""

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        """Answers whose status is not 2xx."""
        return sum(t.count for t in self.failed_by_status.values())

    @property
    def socket_errors(self) -> int:
        """Connect, read and write errors."""
        return self.connect + self.read + self.write

    @property
    def failed(self) -> int:
        """Every failed request: non-2xx, socket errors and timeouts."""
        return self.non_2xx + self.socket_errors + self.timeout


@dataclass
class Soak:
    """Everything measured during one soak run."""

    warmup: WrkResult | None = None
    load: WrkResult | None = None
    load_seconds: float = 0.0
    """Wall time of the measured load, as seen from here."""
    rss_start_mb: float = 0.0
    uss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    uss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    server_cores: float = 0.0
    other_cores: float = 0.0
    """Cores busy outside the server tree (wrk, the training process, other work) during the run."""
    background_cores: float = 0.0
    """Cores other work used just before the warm-up (after waiting up to --quiet-wait for less)."""
    other_top: str = ""
    """The busiest processes outside the server tree during the run."""
    timeline: list[tuple[float, str]] = field(default_factory=list)
    admin_statuses: list[int] = field(default_factory=list)
    initial_version: int | None = None
    """The iris version served when the load starts."""
    promoted_version: int | None = None
    promoted_at: float | None = None
    train_seconds: float | None = None
    trained_during_load: bool = False
    final_iris_version: int | None = None
    reload_metrics: list[str] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)

    def note(self, at: float, what: str) -> None:
        """Add a timeline entry (seconds since the load started) and echo it to stderr."""
        self.timeline.append((at, what))
        print(f"  {at:6.1f} s  {what}", file=sys.stderr, flush=True)


# -- models --------------------------------------------------------------------------------------


def small_spec(example: str, data: Path, *, seed: int) -> str:
    """`examples/<example>.yaml` on `data`, cut down to one small random forest and no tuning."""
    spec = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    spec["data"] = {"path": str(data)}
    spec["seed"] = seed
    spec["candidates"] = [{"name": "random_forest", "params": {"n_estimators": 50, "max_depth": 8}}]
    spec["tuning"] = {"trials": 1}
    return str(yaml.safe_dump(spec, sort_keys=False))


def write_inputs(folder: Path) -> dict[str, Path]:
    """Training data, the specs (iris v1 and v2, shipping) and one valid request body per model."""
    from layerops.datasets import iris, shipping

    folder.mkdir(parents=True, exist_ok=True)
    frames = {"iris": (iris(), "species"), "shipping": (shipping(SHIPPING_ROWS, seed=0), "cost")}
    paths: dict[str, Path] = {}
    for name, (frame, target) in frames.items():
        data = folder / f"{name}.csv"
        frame.to_csv(data, index=False)
        paths[f"{name}_spec"] = folder / f"{name}.yaml"
        paths[f"{name}_spec"].write_text(small_spec(name, data, seed=42))
        row = frame.drop(columns=[target]).dropna().iloc[0].to_dict()
        row = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        paths[f"{name}_body"] = folder / f"{name}_row.json"
        paths[f"{name}_body"].write_text(json.dumps(row, separators=(",", ":")))
    # The second iris version: the same spec with another seed (another split and forest).
    paths["iris_v2_spec"] = folder / "iris_v2.yaml"
    paths["iris_v2_spec"].write_text(small_spec("iris", folder / "iris.csv", seed=7))
    return paths


class Trainer:
    """`layerops train` of one spec in its own process (as in production), bounded by `timeout`."""

    def __init__(self, home: Path, spec: Path, env: dict[str, str], log: Path, timeout: float = 900) -> None:
        self.argv = [str(BIN / "layerops"), "--home", str(home), "train", str(spec), "--quiet"]
        self.env = env
        self.log = log
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.seconds: float | None = None
        """Wall time of the training, once it is done."""

    def start(self) -> None:
        """Start training in the background."""
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=sink, stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def done(self) -> bool:
        """Whether training has finished; raises if it failed or overran its timeout."""
        assert self.proc is not None
        if self.proc.poll() is None:
            if time.monotonic() - self.started > self.timeout:
                self.stop()
                raise RuntimeError(f"{shlex.join(self.argv)} took more than {self.timeout:g} s")
            return False
        if self.seconds is None:
            self.seconds = time.monotonic() - self.started
        if self.proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{shlex.join(self.argv)} failed ({self.proc.returncode}):\n{tail}")
        return True

    def wait(self) -> float:
        """Wait for the started training (bounded by its timeout); its wall time."""
        while not self.done():
            time.sleep(0.2)
        assert self.seconds is not None
        return self.seconds

    def run(self) -> float:
        """Train in the foreground; the wall time."""
        self.start()
        return self.wait()

    def stop(self) -> None:
        """Kill the training if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def latest_version(repo: Any, name: str) -> int:
    """The newest registered version of `name`."""
    return int(repo.list_versions(name)[0].version)


# -- HTTP and wrk --------------------------------------------------------------------------------


def get_json(port: int, path: str, key: str, timeout: float = 10) -> tuple[int, Any]:
    """One GET on a fresh connection; (status, parsed body or None)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    with contextlib.suppress(ValueError):
        return response.status, json.loads(body)
    return response.status, body.decode(errors="replace")


def start_wrk(
    script: Path, port: int, connections: int, seconds: float, out: Path
) -> subprocess.Popen[bytes]:
    """wrk (one thread) in its own process, its output to `out`."""
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", f"{WRK_TIMEOUT_SECONDS}s",
        "-s", str(script), f"http://{HOST}:{port}/",
    ]  # fmt: skip
    with out.open("wb") as sink:
        return subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)


def finish_wrk(proc: subprocess.Popen[bytes], out: Path, started_epoch: float, timeout: float) -> WrkResult:
    """Wait (bounded) for wrk and parse its report; times become seconds since `started_epoch`."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = out.read_text(errors="replace")
    summary = [line for line in text.splitlines() if line.startswith("SOAK ")]
    if proc.returncode != 0 or not summary:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-2000:]}")
    raw = json.loads(summary[-1][len("SOAK ") :])
    failed: dict[str, Tally] = {}
    served: dict[str, Tally] = {}
    for line in text.splitlines():
        if not line.startswith("SOAK_COUNT "):
            continue
        key, count, first, last, *sample = line.split(" ", 5)[1:]
        start = int(started_epoch)  # wrk's clock (os.time) has whole seconds
        tally = Tally(int(count), int(first) - start, int(last) - start, " ".join(sample))
        kind, _, key = key.partition(":")
        (failed if kind == "failed" else served)[key] = tally
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        connect=raw["connect"],
        read=raw["read"],
        write=raw["write"],
        timeout=raw["timeout"],
        failed_by_status=failed,
        served=served,
    )


def run_wrk(script: Path, port: int, connections: int, seconds: float, out: Path) -> WrkResult:
    """One bounded wrk run from start to finish."""
    started = time.time()
    proc = start_wrk(script, port, connections, seconds, out)
    return finish_wrk(proc, out, started, timeout=seconds + 90)


# -- the soak ------------------------------------------------------------------------------------


def admin_reload(port: int, soak: Soak, at: float, why: str) -> None:
    """`POST /admin/reload` with the admin key; its status and outcomes go to the timeline."""
    try:
        status, body = post(port, "/admin/reload", b"", {"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
    except OSError as exc:
        soak.admin_statuses.append(0)
        soak.note(at, f"admin reload ({why}): {type(exc).__name__}: {exc}")
        return
    soak.admin_statuses.append(status)
    try:
        outcomes = [f"{o['name']} {o['status']} v{o['version']}" for o in json.loads(body)["outcomes"]]
        detail = ", ".join(outcomes)
    except (ValueError, KeyError, TypeError):
        detail = body[:300].decode(errors="replace")
    soak.note(at, f"admin reload ({why}): {status} {detail}")


def served_iris_version(port: int) -> int | None:
    """The iris version the server reports (GET /models/iris), or None if it does not answer 200."""
    try:
        status, body = get_json(port, "/models/iris", API_KEY)
    except OSError:
        return None
    if status == 200 and isinstance(body, dict) and isinstance(body.get("version"), int):
        return int(body["version"])
    return None


def promote(repo: Any, soak: Soak, at: float, when: str) -> None:
    """Point iris's `production` alias at its newest version (the repository API)."""
    version = latest_version(repo, "iris")
    repo.set_alias("iris", "production", version, reason=f"bench/soak.py: promoted {when}")
    soak.promoted_version, soak.promoted_at = version, at
    soak.note(at, f"iris v{version} promoted to production {when} (repository API)")


def during_load(
    args: argparse.Namespace,
    port: int,
    server: psutil.Process,
    script: Path,
    work: Path,
    repo: Any,
    trainer: Trainer | None,
    soak: Soak,
) -> None:
    """The measured run: wrk in the background; training, promotion, admin reloads and sampling here.

    `trainer` is the iris v2 training still to run (None: it ran before the load).
    """
    duration = args.duration
    promote_at = duration / 2
    reloads_due = [fraction * duration for fraction in ADMIN_RELOADS_AT]
    seen_version = soak.initial_version
    next_sample = 0.0
    cpu_before, busy_before, processes_before = tree_cpu(server), busy_cpu_seconds(), process_cpu()
    out = work / "wrk_load.txt"

    started_epoch, started = time.time(), time.monotonic()

    def elapsed() -> float:
        return time.monotonic() - started

    proc = start_wrk(script, port, args.connections, duration, out)
    soak.note(0.0, f"wrk starts: {args.connections} connections for {duration:g} s")
    try:
        while proc.poll() is None and elapsed() < duration + 90:
            now = elapsed()
            if trainer is not None and trainer.proc is None and now >= args.train_at * duration:
                trainer.start()
                soak.trained_during_load = True
                soak.note(now, "training iris v2 starts (layerops train, its own process)")
            if trainer is not None and trainer.proc is not None and soak.train_seconds is None:
                if trainer.done():
                    soak.train_seconds = trainer.seconds
                    soak.note(elapsed(), f"training iris v2 done in {trainer.seconds:.1f} s")
            trained = trainer is None or soak.train_seconds is not None
            if trained and soak.promoted_at is None and now >= promote_at:
                promote(repo, soak, elapsed(), "under load")
            if reloads_due and now >= reloads_due[0]:
                reloads_due.pop(0)
                admin_reload(port, soak, now, f"at {now / duration:.0%} of the run")
            if now >= next_sample:
                next_sample = now + 1.0
                soak.rss_peak_mb = max(soak.rss_peak_mb, tree_memory(server)[0])
            if soak.promoted_at is not None and seen_version != soak.promoted_version:
                version = served_iris_version(port)
                if version is not None and version != seen_version:
                    seen_version = version
                    soak.note(elapsed(), f"GET /models/iris reports version {version}")
            time.sleep(0.2)
        soak.load_seconds = elapsed()
        soak.server_cores = (tree_cpu(server) - cpu_before) / soak.load_seconds
        busy = (busy_cpu_seconds() - busy_before) / soak.load_seconds
        soak.other_cores = max(0.0, busy - soak.server_cores)
        exclude = {os.getpid(), *(p.pid for p in [server, *server.children(recursive=True)])}
        soak.other_top = top_consumers(processes_before, exclude, soak.load_seconds)
        soak.load = finish_wrk(proc, out, started_epoch, timeout=max(1.0, duration + 90 - elapsed()))
        soak.note(soak.load_seconds, f"wrk done: {soak.load.requests:,} requests")
        soak.rss_end_mb, soak.uss_end_mb = tree_memory(server)
        soak.rss_peak_mb = max(soak.rss_peak_mb, soak.rss_end_mb)

        # The load is over; finish the scenario anyway so the end state can still be checked.
        if trainer is not None and soak.train_seconds is None:
            if trainer.proc is None:
                trainer.start()
            soak.train_seconds = trainer.wait()
            soak.note(elapsed(), f"training iris v2 done AFTER the load, {soak.train_seconds:.1f} s")
        if soak.promoted_at is None:
            promote(repo, soak, elapsed(), "AFTER the load")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if trainer is not None:
            trainer.stop()

    deadline = time.monotonic() + 30  # the 1 s alias poll; bounded in case the swap never happens
    while True:
        soak.final_iris_version = served_iris_version(port)
        if soak.final_iris_version == soak.promoted_version or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    status, metrics = get_json(port, "/metrics", API_KEY)
    if status == 200 and isinstance(metrics, str):
        soak.reload_metrics = [
            line for line in metrics.splitlines() if line.startswith("layerops_reloads_total")
        ]


def run_soak(args: argparse.Namespace, work: Path, env: dict[str, str]) -> Soak:
    """Train, promote, serve, warm up, soak; the server is always stopped."""
    from layerops.repository.factory import open_repository
    from layerops.settings import Settings

    soak = Soak()
    paths = write_inputs(work / "inputs")
    home = work / "layerops"
    print("training iris and shipping (v1)...", file=sys.stderr, flush=True)
    for name in ("iris", "shipping"):
        seconds = Trainer(home, paths[f"{name}_spec"], env, work / f"train_{name}.log").run()
        print(f"  {name} trained in {seconds:.0f} s", file=sys.stderr, flush=True)
    repo = open_repository(Settings(home=home, tracking_uri=None, registry_uri=None))
    for name in ("iris", "shipping"):
        repo.set_alias(name, "production", latest_version(repo, name), reason="bench/soak.py")
    soak.initial_version = latest_version(repo, "iris")
    trainer: Trainer | None = Trainer(home, paths["iris_v2_spec"], env, work / "train_iris_v2.log")
    if args.train_at < 0 and trainer is not None:
        soak.train_seconds = trainer.run()
        print(f"  iris v2 trained (before the load) in {soak.train_seconds:.0f} s", file=sys.stderr)
        trainer = None

    script = work / "soak.lua"
    script.write_text(
        WRK_SCRIPT.substitute(key=API_KEY, iris=paths["iris_body"], shipping=paths["shipping_body"])
    )
    argv = [
        str(BIN / "layerops"), "--home", str(home), "serve",
        "--model", "iris@production", "--model", "shipping@production", "--port", "{port}",
    ]  # fmt: skip
    server_env = {
        **env,
        "LAYEROPS_API_KEYS": API_KEY,
        "LAYEROPS_ADMIN_API_KEYS": ADMIN_KEY,
        "LAYEROPS_RELOAD_INTERVAL_SECONDS": str(RELOAD_INTERVAL_SECONDS),
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    target = Target(
        "layerops", argv, server_env, "/models/iris/predict", paths["iris_body"], paths["iris_body"], headers
    )
    port = free_port()
    log = work / "server.log"
    print(f"starting layerops serve on {HOST}:{port}...", file=sys.stderr, flush=True)
    try:
        with running(target, port, log, args.start_timeout) as server:
            soak.background_cores = wait_for_quiet(args.quiet_wait)
            soak.warmup = run_wrk(script, port, args.connections, args.warmup, work / "wrk_warmup.txt")
            print(f"  warm-up: {soak.warmup.rps:,.0f} req/s, {soak.warmup.failed} failed", file=sys.stderr)
            soak.rss_start_mb, soak.uss_start_mb = tree_memory(server)
            soak.rss_peak_mb = soak.rss_start_mb
            during_load(args, port, server, script, work, repo, trainer, soak)
    finally:
        soak.log_problems = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if any(word in line for word in ("ERROR", "Traceback", "CRITICAL", "WARNING"))
        ]
    return soak


# -- report --------------------------------------------------------------------------------------


def goals(soak: Soak) -> list[tuple[str, str, str, bool]]:
    """(goal, measured, target, met) for the soak's goals and the scenario's own checks."""
    load = soak.load
    assert load is not None and soak.warmup is not None
    failed = load.failed + soak.warmup.failed
    growth = soak.rss_end_mb / soak.rss_start_mb - 1 if soak.rss_start_mb else float("inf")
    new = soak.promoted_version
    v2 = load.served.get(f"iris@{new}")
    v2_under_load = (
        new is not None
        and new != soak.initial_version
        and soak.promoted_at is not None
        and soak.promoted_at < soak.load_seconds
        and v2 is not None
        and v2.count > 0
    )
    admin_ok = sum(status == 200 for status in soak.admin_statuses)
    return [
        ("failed requests (non-2xx + socket errors + timeouts)", f"{failed:,}", "0", failed == 0),
        (
            "RSS growth, after warm-up → end",
            f"{growth:+.1%}",
            f"< {RSS_GROWTH_GOAL:.0%}",
            growth < RSS_GROWTH_GOAL,
        ),
        (
            f"iris v{soak.initial_version} → v{new} swapped during the load",
            f"v{new}: {v2.count:,} answers from {v2.first:.0f} s" if v2 else f"no v{new} answer",
            f"promoted before {soak.load_seconds:.0f} s, answers > 0",
            v2_under_load,
        ),
        (
            "GET /models/iris after the run",
            f"version {soak.final_iris_version}",
            f"version {soak.promoted_version}",
            soak.final_iris_version is not None and soak.final_iris_version == soak.promoted_version,
        ),
        (
            "POST /admin/reload answered 200",
            f"{admin_ok}/{len(soak.admin_statuses)}",
            "all",
            bool(soak.admin_statuses) and admin_ok == len(soak.admin_statuses),
        ),
    ]


def report(soak: Soak, args: argparse.Namespace) -> tuple[str, bool]:
    """The printed report and whether every goal was met."""
    load, warm = soak.load, soak.warmup
    assert load is not None and warm is not None
    growth = soak.rss_end_mb / soak.rss_start_mb - 1 if soak.rss_start_mb else float("inf")
    failures = (
        "; ".join(
            f"{status}: {t.count:,} ({t.first:.0f}–{t.last:.0f} s), e.g. {t.sample[:200]}"
            for status, t in sorted(load.failed_by_status.items())
        )
        or "none"
    )
    served = ", ".join(
        f"{key} {t.count:,} ({t.first:.0f}–{t.last:.0f} s)" for key, t in sorted(load.served.items())
    )
    out = [
        f"## Soak — {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"Command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`; "
        f"{psutil.cpu_count()} logical cores.",
        f"Load: wrk, 1 thread, {args.connections} connections, {args.duration:g} s after a {args.warmup:g} s "
        "warm-up, single-row requests alternating iris / shipping, `Authorization: Bearer`; "
        f"`LAYEROPS_RELOAD_INTERVAL_SECONDS={RELOAD_INTERVAL_SECONDS}`, 1 worker.",
        "",
        "| figure | value |",
        "|---|--:|",
        f"| requests | {load.requests:,} in {load.seconds:.1f} s |",
        f"| throughput | {load.rps:,.0f} req/s |",
        f"| latency p50 / p99 / max | {load.p50_ms:.2f} / {load.p99_ms:.2f} / {load.max_ms:.1f} ms |",
        f"| non-2xx responses | {load.non_2xx:,} |",
        f"| socket errors (connect / read / write) | {load.socket_errors} "
        f"({load.connect} / {load.read} / {load.write}) |",
        f"| timeouts (> {WRK_TIMEOUT_SECONDS} s) | {load.timeout} |",
        f"| server RSS after warm-up → end | {soak.rss_start_mb:.0f} → {soak.rss_end_mb:.0f} MiB "
        f"({growth:+.1%}); peak {soak.rss_peak_mb:.0f} MiB |",
        f"| server USS after warm-up → end | {soak.uss_start_mb:.0f} → {soak.uss_end_mb:.0f} MiB |",
        f"| CPU during the load | server tree {soak.server_cores:.2f} cores; "
        f"everything else {soak.other_cores:.2f} cores ({soak.other_top or 'none above 0.05'}) |",
        f"| other work just before the warm-up | {soak.background_cores:.2f} cores |",
        f"| warm-up | {warm.requests:,} requests, {warm.rps:,.0f} req/s, {warm.failed} failed |",
        "",
        f"Non-2xx by status: {failures}",
        f"Answers by model version: {served}",
        f"Reload metrics at the end: {'; '.join(soak.reload_metrics) or 'none'}",
        f"Server log warnings/errors: {len(soak.log_problems)}",
        *(f"    {line[:300]}" for line in soak.log_problems[:10]),
        "",
        "Timeline (s since the load started):",
        *(f"  {at:6.1f}  {what}" for at, what in soak.timeline),
        "",
        "| goal | measured | target | met |",
        "|---|--:|---|---|",
    ]
    results = goals(soak)
    out += [
        f"| {name} | {value} | {target} | {'yes' if met else '**no**'} |"
        for name, value, target, met in results
    ]
    if soak.trained_during_load:
        trained = f"trained during the load in {soak.train_seconds or 0:.0f} s"
    else:
        trained = "trained before the load"
    swap = (
        f"iris v{soak.initial_version} → v{soak.promoted_version} ({trained}) promoted at "
        f"{soak.promoted_at or 0:.0f} s"
    )
    out += [
        "",
        f"Soak ({args.duration:g} s, {args.connections} connections, iris/shipping alternating, "
        f"hot reload every {RELOAD_INTERVAL_SECONDS} s, {swap}, {len(soak.admin_statuses)} admin reloads): "
        f"{load.rps:,.0f} req/s, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, "
        f"{load.non_2xx} non-2xx, {load.socket_errors} socket errors, {load.timeout} timeouts; "
        f"RSS {soak.rss_start_mb:.0f} → {soak.rss_end_mb:.0f} MiB ({growth:+.1%}).",
    ]
    return "\n".join(out), all(met for *_, met in results)


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    """Parse the flags, run the soak in a fresh temporary home, print the report, exit 1 on a miss."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up before RSS is read")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 15 s of load, 2 s warm-up")
    parser.add_argument(
        "--train-at",
        type=float,
        default=None,
        help="when training iris v2 starts, as a fraction of the run; it is promoted at 0.5 of the run, "
        "or as soon as it is trained if later; negative: trained before the load. Default 0 (with the "
        "load: one training takes 30-50 s on a busy 2-core machine), with --quick -1",
    )
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds for the server to answer")
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="max seconds to wait for an idle machine first"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (kept anyway on a miss)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 15.0, 2.0
    if args.train_at is None:
        args.train_at = -1.0 if args.quick else 0.0
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    for key in [k for k in env if k.startswith(("LAYEROPS_", "MLFLOW_"))]:
        del env[key]  # the server's and the CLI's defaults, not this shell's
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        # Without bytecode caching every `layerops` process compiles its imports again (~20 s of
        # CPU here); a private cache keeps the mid-run training from being mostly compilation.
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "layerops-soak-pycache")

    work = Path(tempfile.mkdtemp(prefix="layerops-soak-"))
    started = time.perf_counter()
    met = False
    try:
        soak = run_soak(args, work, env)
        text, met = report(soak, args)
        print(text)
    finally:
        kept = args.keep or not met
        if not kept:
            shutil.rmtree(work, ignore_errors=True)
        where = f"; home, logs and wrk output kept in {work}" if kept else ""
        print(f"\n_Total run time {time.perf_counter() - started:.0f} s{where}._")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
