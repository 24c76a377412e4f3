"""The server's side of releases: traffic policies in, canary shares out.

`ReleaseManager` holds the traffic policies a server applies: the traffic file's (hot-reloaded
when it changes) and those set with `PUT /admin/traffic/{name}`, which are stored in the
repository so every worker and replica applies them (a stored policy overrides the file's for
its model; `DELETE` removes it). A policy is checked and its variants loaded before it replaces
the running one; a bad one is refused with one line and the running one stays.

Its `tick` runs the canary controller (`layerops.releases.controller`) and routes each canary's
share; after a promotion it reloads, so the new production version serves before the canary's
share drops to 0.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from layerops.delivery.reload import Reloader
from layerops.delivery.routing import TrafficRouter
from layerops.errors import LayeropsError, NotFoundError, PolicyError
from layerops.releases.canary import CanaryState
from layerops.releases.controller import CanaryController, ModelFacts
from layerops.releases.policy import ModelPolicy, load_policies, parse_model_policy
from layerops.repository.api import ModelRepository

log = logging.getLogger("layerops.delivery")

POLICY_TAG = "layerops.release.policy"
"""Registered-model tag holding a policy set through the admin route (JSON)."""


class ReleaseManager:
    """Applies traffic policies to a router and runs the canary state machine."""

    def __init__(
        self,
        router: TrafficRouter,
        repository: ModelRepository,
        reloader: Reloader,
        *,
        traffic_file: Path | None,
        lease_seconds: float = 10.0,
        rollbacks: Any = None,
    ) -> None:
        self.router = router
        self._repository = repository
        self._reloader = reloader
        self.traffic_file = traffic_file
        self._file_stamp: tuple[float, int] | None = None
        self._file_policies: dict[str, ModelPolicy] = {}
        self._stored: dict[str, str | None] = {}  # model → the stored policy's JSON last applied
        self._lock = threading.Lock()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._rollbacks = rollbacks
        self.controller = CanaryController(
            repository,
            holder=self.holder,
            lease_seconds=lease_seconds,
            promote=self._promote,
            on_rollback=self._rolled_back,
        )
        self.states: dict[str, CanaryState | None] = {}
        self.reload_failures = 0

    # -- policies -----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the traffic file and the stored policies (the initiating phase: a bad file fails it)."""
        if self.traffic_file is not None:
            self._file_policies = dict(load_policies(self.traffic_file).items())
            self._file_stamp = _stamp(self.traffic_file)
        self._apply_all(strict=True)

    def policies(self) -> dict[str, ModelPolicy]:
        """The live policy of each model that has one."""
        return {name: route.policy for name, route in self.router.routes().items()}

    def check_file(self) -> bool:
        """Reload the traffic file if it changed; False (running policies kept) when it is bad."""
        if self.traffic_file is None:
            return True
        stamp = _stamp(self.traffic_file)
        if stamp == self._file_stamp:
            return True
        try:
            policies = dict(load_policies(self.traffic_file).items())
        except LayeropsError as exc:
            self.reload_failures += 1
            log.error("traffic file not applied, the running policies stay: %s", exc)
            self._file_stamp = stamp  # reported once per change, not every tick
            return False
        self._file_stamp = stamp
        with self._lock:
            self._file_policies = policies
        return self._apply_all(strict=False)

    def check_stored(self) -> bool:
        """Apply policies stored (or removed) through the admin route by any process."""
        stored = {name: self._stored_policy(name) for name in self.router_models()}
        if all(value == self._stored.get(name) for name, value in stored.items()):
            return True
        return self._apply_all(strict=False, stored=stored)

    def router_models(self) -> list[str]:
        """The names of the models this server serves."""
        return sorted(self.router.registry.refs)

    def put(self, name: str, data: object) -> dict[str, Any]:
        """Check, load and apply a policy for `name`, and store it for every process (blocking)."""
        source = f"PUT /admin/traffic/{name}"
        policy = parse_model_policy(name, data, source)
        self.router.install(policy, source=source)
        text = json.dumps(policy.as_dict(), sort_keys=True)
        self._repository.set_model_tag(name, POLICY_TAG, text)
        self._stored[name] = text
        described = self.router.describe(name)
        assert described is not None
        return described

    def delete(self, name: str) -> bool:
        """Remove the stored policy of `name` (the file's, if any, applies again)."""
        try:
            self._repository.delete_model_tag(name, POLICY_TAG)
        except NotFoundError:
            pass
        self._stored.pop(name, None)
        self._apply_all(strict=False)
        return self.router.route(name) is not None

    def _stored_policy(self, name: str) -> str | None:
        try:
            return self._repository.model_tag(name, POLICY_TAG)
        except NotFoundError:
            return None

    def _apply_all(self, *, strict: bool, stored: dict[str, str | None] | None = None) -> bool:
        """Install every model's policy (stored over file); a failing one keeps its running route.

        `stored`: each model's stored policy when the caller has just read them (else read here).
        """
        ok = True
        if stored is None:
            stored = {name: self._stored_policy(name) for name in self.router_models()}
        for name, text in stored.items():
            try:
                if text is not None:
                    policy: ModelPolicy | None = parse_model_policy(
                        name, json.loads(text), f"policy of {name} stored by PUT /admin/traffic"
                    )
                else:
                    policy = self._file_policies.get(name)
                source = f"{self.traffic_file}" if text is None else f"stored policy of {name}"
                if policy is None:
                    self.router.remove(name)
                else:
                    live = self.router.route(name)
                    if live is None or live.policy != policy:
                        self.router.install(policy, share=self._share(name, policy), source=source)
                self._stored[name] = text
            except (LayeropsError, ValueError) as exc:
                ok = False
                self.reload_failures += 1
                if strict:
                    raise PolicyError(str(exc)) from exc
                log.error("traffic policy of %s not applied, the running one stays: %s", name, exc)
        unknown = set(self._file_policies) - set(self.router_models())
        if unknown and strict:
            raise PolicyError(
                f"{self.traffic_file}: models.{sorted(unknown)[0]}: not served here "
                f"(served: {', '.join(self.router_models())})"
            )
        return ok

    def _share(self, name: str, policy: ModelPolicy) -> float | None:
        state = self.states.get(name)
        if policy.canary is None:
            return None
        return state.share if state is not None and state.status != "rolled_back" else 0.0

    # -- the canary loop ------------------------------------------------------------------------

    def tick(self) -> None:
        """One round of the canary state machine; route each canary's share (blocking)."""
        policies = self.policies()
        if not any(p.canary is not None for p in policies.values()):
            return
        states = self.controller.tick(
            policies, self.router.window, facts=self._facts, monotonic=time.monotonic()
        )
        for name, state in states.items():
            self.states[name] = state
            if state is None:
                self.router.set_share(name, 0.0)
                continue
            if state.status == "promoted":
                served = self.router.registry.get(name)
                if served.version != state.candidate:
                    self._reloader.reload()  # the new production serves before the canary steps back
                self.router.set_share(name, 0.0)
                continue
            if state.status == "running" and self._canary_version(name) != state.candidate:
                self.router.refresh()  # the candidate alias moved: load the version the state names
            self.router.set_share(name, state.share if state.status in ("running", "held") else 0.0)

    def _canary_version(self, name: str) -> int | None:
        route = self.router.route(name)
        model = None if route is None else route.models.get("canary")
        return None if model is None else model.version

    def _facts(self, name: str) -> ModelFacts:
        try:
            metadata = self.router.registry.get(name).metadata
        except LayeropsError:
            return ModelFacts()
        metric = metadata.lineage.spec.get("selection", {}).get("metric") if metadata.lineage.spec else None
        labels = self.router.labels(name)
        return ModelFacts(
            task=metadata.task, metric=metric if isinstance(metric, str) else None, labels=labels or None
        )

    def _promote(self, name: str, version: int) -> tuple[bool, dict[str, Any]]:
        from layerops.releases.promotion import promote

        promotion = promote(
            self._repository,
            name,
            version,
            alias="production",
            reason="the canary held at every step",
        )
        report = promotion.report.as_dict() if promotion.report is not None else {}
        return promotion.change is not None, report

    def _rolled_back(self, name: str, state: CanaryState) -> None:
        self.router.set_share(name, 0.0)  # at once, before anything else
        if self._rollbacks is not None:
            self._rollbacks.labels(name).inc()


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime, stat.st_size
