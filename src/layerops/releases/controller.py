"""The canary controller: runs each canary policy's state machine against the repository.

Every server process (worker or replica) runs a controller on a short interval. Each tick reads
the model's canary state from the repository and returns it, so every process routes the same
share. Decisions (start, advance, roll back, promote) are made once: by the process that holds
the model's lease in the repository (`ReleaseStore.lease`), on the outcomes it observed itself —
with a load balancer spreading requests, one process's window is a random sample of the traffic.
A save carries the revision it was decided on, so a process that lost the lease mid-decision
cannot overwrite a newer state. The state lives in the repository, so a restart resumes it.

A canary starts when the policy's alias (default `candidate`) names a version newer than both
`production` and the last canary's candidate: a rollback moves the alias back to an older
version, which therefore never starts again; a retrain registers a newer one, which does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from layerops.errors import LayeropsError, NotFoundError, RepositoryError
from layerops.releases.analysis import OutcomeWindow, compare
from layerops.releases.canary import CanaryState, ReleaseStore, StaleStateError, decide, start
from layerops.releases.policy import ModelPolicy
from layerops.repository.api import ModelRepository

log = logging.getLogger("layerops.releases")

Promote = Callable[[str, int], tuple[bool, dict[str, Any]]]
"""Promotes (name, version) to production through the gate: (passed, the gate report as a dict)."""
Windows = Callable[[str, str], OutcomeWindow]
"""The outcome window of (model, variant)."""


@dataclass(frozen=True)
class ModelFacts:
    """What the analysis needs to know about a model being released."""

    task: str = "classification"
    metric: str | None = None
    labels: Mapping[str, object] | None = None
    """Request id → true label, from feedback this process received (for the metric check)."""


class CanaryController:
    """Runs the canary state machine of every model whose policy has a canary."""

    def __init__(
        self,
        repository: ModelRepository,
        *,
        holder: str,
        lease_seconds: float = 10.0,
        promote: Promote | None = None,
        on_rollback: Callable[[str, CanaryState], None] | None = None,
    ) -> None:
        self._repository = repository
        self._store = ReleaseStore(repository)
        self.holder = holder
        self._lease_seconds = lease_seconds
        self._promote = promote
        self._on_rollback = on_rollback

    def tick(
        self,
        policies: Mapping[str, ModelPolicy],
        windows: Windows,
        *,
        facts: Callable[[str], ModelFacts] = lambda name: ModelFacts(),
        monotonic: float,
        now: datetime | None = None,
    ) -> dict[str, CanaryState | None]:
        """One round over every canary policy: model → its live state (None: no canary running)."""
        now = now or datetime.now(UTC)
        live: dict[str, CanaryState | None] = {}
        for name, policy in policies.items():
            if policy.canary is None:
                continue
            try:
                live[name] = self._tick_one(name, policy, windows, facts(name), monotonic, now)
            except StaleStateError:
                live[name] = self._store.load(name)  # another process decided first: follow it
            except LayeropsError as exc:
                log.error("canary of %s: %s", name, exc)
                live[name] = None
        return live

    def _tick_one(
        self,
        name: str,
        policy: ModelPolicy,
        windows: Windows,
        facts: ModelFacts,
        monotonic: float,
        now: datetime,
    ) -> CanaryState | None:
        assert policy.canary is not None
        state = self._store.load(name)
        production = _version_of(self._repository, name, "production")
        candidate = _version_of(self._repository, name, policy.canary.alias)
        newer = candidate is not None and production is not None and candidate > production
        if newer and (state is None or (candidate or 0) > state.candidate):
            if not self._store.lease(name, self.holder, self._lease_seconds):
                return state  # the lease holder starts it
            assert candidate is not None and production is not None
            started = start(name, production, candidate, policy.canary, now, previous=state)
            self._store.save(started, expected_revision=None if state is None else state.revision)
            windows(name, "canary").clear()
            self._event(name, "canary_started", f"canary of v{candidate} against v{production}", started)
            return started
        if state is None or state.status != "running":
            return state
        if not self._store.lease(name, self.holder, self._lease_seconds):
            return state
        analysis = policy.canary.analysis
        # At a 100 % step the baseline gets no traffic: compare with its last window of traffic.
        baseline_outcomes = windows(name, "baseline").latest(analysis.window_seconds)
        canary_outcomes = windows(name, "canary").recent(monotonic, analysis.window_seconds)
        comparison = compare(
            baseline_outcomes,
            canary_outcomes,
            analysis,
            labels=facts.labels,
            task=facts.task,
            metric=facts.metric,
        )
        decision = decide(state, comparison, policy.canary, now)
        if decision.action == "hold":
            return state
        numbers = comparison.as_dict()
        if decision.action == "rollback":
            self._store.save(decision.state, expected_revision=state.revision)
            self._roll_back_alias(name, policy.canary.alias, decision.reason, numbers)
            self._event(name, "canary_rolled_back", decision.reason, decision.state, numbers)
            log.warning("canary of %s v%s rolled back: %s", name, state.candidate, decision.reason)
            if self._on_rollback is not None:
                self._on_rollback(name, decision.state)
            return decision.state
        if decision.action == "advance":
            self._store.save(decision.state, expected_revision=state.revision)
            self._event(name, "canary_advanced", decision.reason, decision.state, numbers)
            return decision.state
        return self._finish(name, policy, state, decision.state, decision.reason, numbers)

    def _finish(
        self,
        name: str,
        policy: ModelPolicy,
        state: CanaryState,
        finished: CanaryState,
        reason: str,
        numbers: dict[str, Any],
    ) -> CanaryState:
        """The last step held: promote through the gate (or hold when the policy says not to)."""
        assert policy.canary is not None
        if not policy.canary.promote or self._promote is None:
            held = _with(finished, status="held", reason=f"{reason}; promotion is left to an operator")
            self._store.save(held, expected_revision=state.revision)
            self._event(name, "canary_held", held.reason, held, numbers)
            return held
        passed, report = self._promote(name, state.candidate)
        if passed:
            done = _with(finished, status="promoted", share=0.0, reason=f"{reason}; promoted to production")
            self._store.save(done, expected_revision=state.revision)
            self._event(name, "canary_promoted", done.reason, done, {"analysis": numbers, "gate": report})
            return done
        held = _with(finished, status="held", reason=f"{reason}; the promotion gate refused it")
        self._store.save(held, expected_revision=state.revision)
        self._event(name, "canary_held", held.reason, held, {"analysis": numbers, "gate": report})
        return held

    def _roll_back_alias(self, name: str, alias: str, reason: str, numbers: dict[str, Any]) -> None:
        """Move the canary's alias back one step in its history (or remove it when it has none)."""
        why = f"canary rolled back: {reason}"
        try:
            self._repository.rollback(name, alias, reason=why)
        except (NotFoundError, RepositoryError):  # no earlier version, or moved outside layerops
            try:
                self._repository.remove_alias(name, alias, reason=why, details=numbers)
            except NotFoundError:
                pass  # already gone

    def _event(
        self, name: str, kind: str, message: str, state: CanaryState, numbers: dict[str, Any] | None = None
    ) -> None:
        details: dict[str, Any] = {
            "candidate": state.candidate,
            "baseline": state.baseline,
            "share": state.share,
        }
        if numbers:
            details["analysis"] = numbers
        try:
            self._repository.record_event(name, kind, message, details)
        except LayeropsError as exc:  # the decision stands; its record is best effort
            log.error("could not record %s of %s: %s", kind, name, exc)


def _version_of(repository: ModelRepository, name: str, alias: str) -> int | None:
    try:
        return repository.resolve_alias(name, alias).version
    except NotFoundError:
        return None


def _with(state: CanaryState, **changes: Any) -> CanaryState:
    return replace(state, **changes)
