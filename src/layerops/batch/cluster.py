"""The Dask cluster a batch runs on: a scheduler's address, or `local:N` worker processes here.

`local:N` starts a `LocalCluster` of N processes with one thread each: ONNX Runtime and
scikit-learn hold the GIL for part of each call, so processes, not threads, use N cores, and
each worker scores one partition at a time on one ONNX thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from layerops.batch._storage import describe
from layerops.errors import LayeropsError
from layerops.numbers import parse_natural

if TYPE_CHECKING:
    from distributed import Client

CONNECT_SECONDS = 10.0
_USAGE = "use local:N (N worker processes on this machine) or a scheduler address such as tcp://host:8786"


def parse_address(address: str) -> int | str:
    """The worker count of `local:N`, or the scheduler address (a `LayeropsError` if malformed)."""
    text = address.strip()
    if text.startswith("local:"):
        workers = parse_natural(text.removeprefix("local:"))
        if workers is None or workers < 1:
            raise LayeropsError(f"bad --dask value {address!r}: {_USAGE}")
        return workers
    if not text or text.startswith("local"):
        raise LayeropsError(f"bad --dask value {address!r}: {_USAGE}")
    return text


@contextlib.contextmanager
def dask_client(address: str) -> Iterator[Client]:
    """A client of the cluster `address` names (started here for `local:N`, closed after)."""
    target = parse_address(address)
    from distributed import Client, LocalCluster

    with _quiet("distributed"):
        yield from _client(target, Client, LocalCluster)


def _client(target: int | str, client_type: Any, cluster_type: Any) -> Iterator[Client]:
    if isinstance(target, int):
        with (
            cluster_type(
                n_workers=target,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            client_type(cluster) as client,
        ):
            yield client
        return
    try:
        client = client_type(target, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as exc:
        raise LayeropsError(f"cannot reach the Dask scheduler at {target}: {describe(exc)}") from exc
    with client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_SECONDS)
        except TimeoutError as exc:
            raise LayeropsError(
                f"the Dask scheduler at {target} has no workers (waited {CONNECT_SECONDS:g} s)"
            ) from exc
        yield client


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only errors from `name`'s loggers while the cluster runs: Dask logs every worker's start and
    stop at INFO, which the CLI's root handler would print (`silence_logs` reaches only Dask's own
    handlers)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)
