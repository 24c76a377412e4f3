"""Initiating phase and hot reload: load every configured model, then follow their aliases.

A new version is loaded aside, warmed and checked against its reference rows, then swapped in;
if that fails, the old version keeps serving and the failure shows in readiness and metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import anyio
import anyio.to_thread

from layerops.delivery.models import ModelLoader, ModelRegistry, ServedModel
from layerops.delivery.settings import ModelRef
from layerops.errors import LayeropsError

log = logging.getLogger("layerops.delivery")

SwapHook = Callable[[ServedModel, ServedModel | None], None]
FailHook = Callable[[str, str], None]


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did for one model."""

    name: str
    status: Literal["unchanged", "swapped", "failed"]
    previous: int | None
    version: int | None
    reason: str = ""


class Reloader:
    """Loads the configured models and swaps in new versions when their aliases move."""

    def __init__(
        self,
        registry: ModelRegistry,
        loader: ModelLoader,
        *,
        on_swap: SwapHook | None = None,
        on_failure: FailHook | None = None,
    ) -> None:
        self._registry = registry
        self._loader = loader
        self._on_swap = on_swap
        self._on_failure = on_failure
        self._lock = threading.Lock()

    def load_all(self, *, degraded: bool) -> None:
        """The initiating phase: load every configured model; fail fast unless `degraded`."""
        for ref in list(self._registry.refs.values()):
            try:
                self._swap_in(self._loader.load(ref.name, ref.ref))
            except LayeropsError as exc:
                reason = f"model {ref}: {exc}"
                self._fail(ref.name, reason)
                if not degraded:
                    raise LayeropsError(f"cannot start: {reason}") from exc
                log.error("starting degraded: %s", reason)

    def reload(self) -> list[ReloadOutcome]:
        """Check every configured model's reference once; swap in versions that changed."""
        with self._lock:
            return [self._reload_one(ref) for ref in list(self._registry.refs.values())]

    def _reload_one(self, ref: ModelRef) -> ReloadOutcome:
        current = self._registry.models_by_name().get(ref.name)
        previous = current.version if current else None
        try:
            version = self._loader.resolve(ref.name, ref.ref)
            if current is not None and version == current.version:
                self._registry.recovered(ref.name)  # the registry answers again: readiness recovers
                return ReloadOutcome(ref.name, "unchanged", previous, version)
            model = self._loader.load(ref.name, ref.ref, version=version)
        except LayeropsError as exc:
            reason = f"model {ref}: {exc}"
            self._fail(ref.name, reason)
            log.error("reload failed, still serving v%s: %s", previous, reason)
            return ReloadOutcome(ref.name, "failed", previous, previous, reason)
        self._swap_in(model)
        log.warning("reloaded %s: v%s -> v%s", ref.name, previous, model.version)
        return ReloadOutcome(ref.name, "swapped", previous, model.version)

    def _swap_in(self, model: ServedModel) -> None:
        old = self._registry.swap(model)
        if self._on_swap is not None:
            self._on_swap(model, old)

    def _fail(self, name: str, reason: str) -> None:
        self._registry.fail(name, reason)
        if self._on_failure is not None:
            self._on_failure(name, reason)

    async def poll(self, interval: float) -> None:
        """Reload every `interval` seconds until cancelled."""
        while True:
            await anyio.sleep(interval)
            await anyio.to_thread.run_sync(self.reload)
