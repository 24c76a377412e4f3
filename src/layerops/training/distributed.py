"""Candidates on a Dask cluster (`train --dask`): each candidate's whole study is one Dask task.

Why a task per candidate and not per trial: seeded TPE is sequential (each suggestion depends on
every score before it), so trials spread over workers would be suggested from other histories
than in one process, and results would depend on timing. Candidates are independent. Each task
runs `fitting.fit_candidate`, the code a run in one process runs, with the same seed on the same
arrays (pickled bit for bit): the leaderboard is the single-process run's, only sooner. Optuna's
`DaskStorage` (optuna-integration, not a dependency) shares one study between workers, which is
the timing-dependent kind. The rows go to the cluster once (`scatter`); trial scores come back as
Dask events, drawn by the caller's reporter in the caller's thread.

This module imports Dask only when a cluster is used: the CLI checks `--dask` values with it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import queue
import re
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from layerops.errors import TrainingError
from layerops.training.cores import available_cores

if TYPE_CHECKING:
    from distributed import Client, Future

    from layerops.spec import CandidateSpec
    from layerops.training.fitting import FitPlan
    from layerops.training.reporting import Reporter
    from layerops.training.selection import CandidateOutcome

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a scheduler that does not answer (Dask's own default is 30)."""

ALLOWED = (
    "local:N (N >= 1 worker processes on this machine) or a scheduler address such as tcp://scheduler:8786"
)
"""What `--dask` / `dask=` accepts, as error messages say it."""

_ADDRESS = re.compile(r"(tcp|tls|ws|wss|ucx)://(\[[0-9a-fA-F:.]+\]|[\w.\-]+):(\d{1,5})")
_LOCAL = re.compile(r"local:(\d+)")


class SchedulerUnreachableError(TrainingError):
    """No Dask scheduler answered at the address given."""


def is_address(text: str) -> bool:
    """True when `text` names a cluster layerops can use: `local:N` (N >= 1) or `scheme://host:port`."""
    local = _LOCAL.fullmatch(text)
    return bool((local and int(local.group(1)) >= 1) or _ADDRESS.fullmatch(text))


def probe(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise SchedulerUnreachableError unless a TCP server accepts connections at `address`.

    Cheap (no Dask import): a scheduler that is not running fails in milliseconds, before the
    training stack loads; Dask's own handshake follows when the candidates are submitted.
    """
    match = _ADDRESS.fullmatch(address)
    if match is None or match.group(1) == "ucx":
        return
    host = match.group(2).strip("[]")
    try:
        socket.create_connection((host, int(match.group(3))), timeout=timeout).close()
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        raise SchedulerUnreachableError(
            f"no Dask scheduler answered at {address} ({why}); start one (dask scheduler) or use local:N"
        ) from exc


def check_address(address: str) -> str:
    """`address` if `is_address`; else a TrainingError saying what is allowed."""
    if not is_address(address):
        raise TrainingError(f"dask={address!r}: use {ALLOWED}")
    return address


@contextlib.contextmanager
def on_dask(
    target: str | Client, *, jobs: int | None = None, note: Callable[[str], None] | None = None
) -> Iterator[DaskRunner]:
    """A runner on `target`: `local:N` (a `LocalCluster`), a scheduler address (connected within
    `CONNECT_TIMEOUT` seconds, else `SchedulerUnreachableError`) or a `Client` the caller keeps
    open. A cluster or connection opened here closes once the candidates are fitted, before their
    latency is timed. Models train on `jobs` threads, default their worker's thread count.
    `note(message)` hears which cluster the run uses.
    """
    if not isinstance(target, str):
        _describe(target, "the Dask cluster of the client given", note)
        yield DaskRunner(target, jobs)
        return
    address = check_address(target)
    from distributed import Client, LocalCluster

    local = _LOCAL.fullmatch(address)
    if local:
        workers = int(local.group(1))
        with _quiet_dask_logs() as level, contextlib.ExitStack() as opened:
            with _workers_ignore_ctrl_c():
                cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=workers,
                    threads_per_worker=max(1, available_cores() // workers),
                    processes=True,
                    dashboard_address="127.0.0.1:0",  # its HTTP routes on a free loopback port
                    silence_logs=level,  # in the workers
                )
            opened.enter_context(cluster)
            client = opened.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
            client.run(_exit_without_teardown)  # type: ignore[no-untyped-call]
            _describe(client, f"a local Dask cluster ({address})", note)
            yield DaskRunner(client, jobs, opened.close)
        return
    probe(address)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachableError(
            f"no Dask scheduler answered at {address} within {CONNECT_TIMEOUT:g} s "
            f"({exc}); start one (dask scheduler) or use local:N"
        ) from exc
    with contextlib.ExitStack() as opened:
        opened.enter_context(client)
        _describe(client, f"the Dask scheduler at {address}", note)
        yield DaskRunner(client, jobs, opened.close)


@contextlib.contextmanager
def _quiet_dask_logs() -> Iterator[int]:
    """The log level for a local cluster's scheduler and nannies (in this process) and workers:
    CRITICAL, unless the log level asks for INFO or more. What matters reaches the user as an
    exception (a task's error, a worker that died); the rest is Dask's business: workers joining
    and leaving, slow to exit on a busy machine, their task's traceback a second time, the
    scheduler losing the scattered rows when Ctrl-C stops the run."""
    wanted = logging.getLogger().getEffectiveLevel()
    level = logging.CRITICAL if wanted > logging.INFO else wanted
    # asyncio: "Task exception was never retrieved" when Ctrl-C stops a scatter half-way
    loggers = [logging.getLogger(name) for name in ("distributed", "asyncio")]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.level))
    try:
        yield level
    finally:
        for logger, old in zip(loggers, before, strict=True):
            logger.setLevel(old)


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Worker processes started inside ignore SIGINT: a terminal's Ctrl-C reaches the whole
    process group, and each worker would print a KeyboardInterrupt traceback while this process
    stops them anyway. A process inherits an ignored signal, so SIGINT is ignored here while they
    start (a Ctrl-C in that second is lost); only the main thread may change it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _exit_without_teardown() -> None:
    """In a worker this process started: end without the interpreter's teardown.

    Freeing a worker's heap module by module (scikit-learn, pandas, Optuna, the fitted models)
    outlasted the nanny's 4 s grace on a busy 2-core machine, which then killed it: closing
    the cluster took 4.3 s, 0.4 s with this. Logs and streams are flushed first; the exit status
    is 0, which a nanny that is closing the worker does not read.
    """

    def leave() -> None:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(leave)


def _describe(client: Client, what: str, note: Callable[[str], None] | None) -> None:
    """Say how big the cluster is; refuse one without workers (its tasks would wait forever).

    Every worker starts importing the training code at once, while this process loads and
    cleans the data: seconds that the first candidate would otherwise wait.
    """
    from distributed import fire_and_forget

    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except TimeoutError as exc:
        raise TrainingError(f"{what} has no workers (waited {CONNECT_TIMEOUT:g} s); start some") from exc
    workers = client.scheduler_info(n_workers=-1)["workers"]
    for address in workers:
        fire_and_forget(client.submit(_import_training, workers=[address], pure=False))  # type: ignore[no-untyped-call]
    threads = sum(int(w["nthreads"]) for w in workers.values())
    if note is not None:
        note(f"candidates run on {what}: {len(workers)} workers, {threads} threads")


def _import_training() -> None:
    """Import what a candidate's task needs (scikit-learn, Optuna, pandas, layerops.training)."""
    import layerops.training.fitting  # noqa: F401


@dataclass(frozen=True)
class DaskRunner:
    """Fits every candidate as one Dask task; their latency is then measured here, one at a time."""

    client: Client
    jobs: int | None = None
    """Threads per model on a worker (None: the worker's thread count)."""
    release: Callable[[], None] | None = None
    """Closes what `on_dask` opened, once the tasks ended: the scheduler and nannies of a local
    cluster run in this process, and their threads would slow the latency timing."""

    def fit_all(
        self, plan: FitPlan, candidates: list[CandidateSpec], report: Reporter
    ) -> list[CandidateOutcome]:
        """Every candidate's outcome in the order of `candidates`; a failed task raises a
        TrainingError naming its candidate (the other tasks are cancelled)."""
        from layerops.training.fitting import measure, trial_budget

        client, run = self.client, uuid.uuid4().hex[:12]
        board = _Progress(report, {c.name: trial_budget(plan, c) for c in candidates})
        topic = f"layerops-trials-{run}"
        events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        client.subscribe_topic(topic, lambda event: events.put(event[1]))  # type: ignore[no-untyped-call]
        pending: dict[Future[CandidateOutcome], str] = {}
        shared: list[Future[FitPlan]] = []
        outcomes: dict[str, CandidateOutcome] = {}
        try:
            # The rows travel once to each worker that will fit; every task depends on this one
            # future. Held by one worker only, they would draw every task to it (the scheduler
            # favours the worker holding a task's data; another got work when it stole some, late).
            holders = list(client.scheduler_info(n_workers=-1)["workers"])[: len(candidates)]
            shared.append(client.scatter(plan, workers=holders, broadcast=True, hash=False))  # type: ignore[no-untyped-call]
            for candidate in candidates:
                # One task prefix for all: Dask learns how long a candidate takes, and steals wisely.
                key = f"layerops-candidate-{candidate.name}-{run}"
                future = client.submit(fit_on_worker, shared[0], candidate, self.jobs, topic, key=key)
                pending[future] = candidate.name
            while pending:
                with contextlib.suppress(queue.Empty):  # a timeout keeps Ctrl-C responsive
                    board.event(events.get(timeout=0.1))
                    continue
                for future in [f for f in pending if f.done()]:  # type: ignore[no-untyped-call]
                    name = pending.pop(future)
                    outcomes[name] = _outcome(future, name)
                    board.finished(name, outcomes[name].trials)
        finally:
            client.unsubscribe_topic(topic)  # type: ignore[no-untyped-call]
            client.cancel([*pending, *shared])  # type: ignore[no-untyped-call]
        if self.release is not None:
            self.release()
        ordered = []
        for candidate in candidates:
            outcome = measure(plan, outcomes[candidate.name])
            report.candidate_end(candidate.name, outcome.flat_metrics())
            ordered.append(outcome)
        return ordered


def fit_on_worker(plan: FitPlan, candidate: CandidateSpec, jobs: int | None, topic: str) -> CandidateOutcome:
    """The Dask task: `fit_candidate` on this worker's threads, trial scores sent as events."""
    from distributed import get_worker
    from threadpoolctl import threadpool_limits

    from layerops.training.fitting import fit_candidate

    worker, name = get_worker(), candidate.name
    threads = jobs or worker.state.nthreads
    worker.log_event(topic, {"candidate": name, "trial": 0, "value": math.nan})

    def on_trial(number: int, value: float) -> None:
        worker.log_event(topic, {"candidate": name, "trial": number, "value": value})

    with threadpool_limits(limits=threads):
        return fit_candidate(plan, candidate, threads, on_trial)


def _outcome(future: Future[CandidateOutcome], name: str) -> CandidateOutcome:
    """The task's result, or a TrainingError naming the candidate."""
    from distributed import KilledWorker

    try:
        outcome: CandidateOutcome = future.result()
    except TrainingError as exc:
        if str(exc).startswith(f"candidate {name}"):
            raise
        raise TrainingError(f"candidate {name}: {exc}") from exc
    except KilledWorker as exc:
        raise TrainingError(f"candidate {name}: every Dask worker that ran it died (out of memory?)") from exc
    except Exception as exc:  # whatever the task raised, re-raised here by Dask
        first = (str(exc).strip().splitlines() or [""])[0]
        raise TrainingError(
            f"candidate {name} failed on a Dask worker: {type(exc).__name__}: {first}"
        ) from exc
    return outcome


class _Progress:
    """Turns worker events into reporter calls: each candidate starts once, its trials count up,
    and events that arrive after the candidate's result (they travel another way) are dropped."""

    def __init__(self, report: Reporter, budgets: dict[str, int]) -> None:
        self.report, self.budgets = report, budgets
        self.started: set[str] = set()
        self.shown: dict[str, int] = {}
        self.done: set[str] = set()

    def event(self, message: dict[str, Any]) -> None:
        name, number = str(message["candidate"]), int(message["trial"])
        if name in self.done or name not in self.budgets:
            return
        self._start(name)
        if number > 0:
            self.report.trial(name, number, float(message["value"]))
            self.shown[name] = number

    def finished(self, name: str, trials: list[tuple[dict[str, Any], float]]) -> None:
        self._start(name)
        for number in range(self.shown.get(name, 0) + 1, len(trials) + 1):
            self.report.trial(name, number, trials[number - 1][1])
        self.done.add(name)

    def _start(self, name: str) -> None:
        if name not in self.started:
            self.started.add(name)
            self.report.candidate_start(name, self.budgets[name])
