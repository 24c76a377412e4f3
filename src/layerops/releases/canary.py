"""The canary state machine (pure) and its store in the repository.

States: `running` (share = the current step's percent) → `rolled_back` (share 0) on a failing
comparison, or, after the last step held, `promoted`; the caller runs the promotion gate and
turns a refusal (or `promote: false`) into `held`: the canary keeps the last step's share until
an operator acts (`transition` records what they did). `decide` never changes a state that is
not running; every change bumps `revision` and appends to `history` (the last 20 transitions).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from layerops.errors import RepositoryError
from layerops.releases.analysis import Comparison
from layerops.releases.policy import CanaryPolicy
from layerops.repository.api import RELEASE_TAG_PREFIX, ModelRepository

log = logging.getLogger("layerops.releases")

Status = Literal["running", "rolled_back", "promoted", "held"]
Action = Literal["hold", "advance", "rollback", "finish"]
HISTORY = 20
"""Transitions kept in `CanaryState.history` (fewer when they do not fit `MAX_JSON_CHARS`)."""
MAX_JSON_CHARS = 4500
"""The longest stored state: some backends cap a registered-model tag at 5000 characters."""
STATE_TAG = f"{RELEASE_TAG_PREFIX}canary"
LEASE_TAG = f"{RELEASE_TAG_PREFIX}lease"


class StaleStateError(RepositoryError):
    """A canary state was saved over a revision other than the one it was decided from."""


@dataclass(frozen=True)
class CanaryState:
    """Where one model's canary stands: versions, step, share, status, and why."""

    model: str
    baseline: int
    """The production version the canary is compared with."""
    candidate: int
    step: int
    """Index into the policy's steps."""
    share: float
    """Percent of traffic to the canary now."""
    status: Status
    since: datetime
    """When the current step (or the final status) began, UTC."""
    revision: int
    """+1 on each change: a save names the revision it was decided from."""
    reason: str
    history: list[dict[str, Any]] = field(default_factory=list)
    """The last `HISTORY` transitions: at, action, status, step, share, candidate, reason and the
    comparison's numbers (4 significant digits); the stored copy keeps as many as fit."""

    def to_json(self) -> str:
        """The state as one JSON object of at most `MAX_JSON_CHARS` (what the repository tag holds):
        the oldest history entries are left out, then the reason is cut, until it fits."""
        data = {**self.__dict__, "since": self.since.isoformat(), "history": list(self.history)}
        text = json.dumps(data, sort_keys=True, allow_nan=False, default=str)
        while len(text) > MAX_JSON_CHARS and data["history"]:
            data["history"] = data["history"][1:]
            text = json.dumps(data, sort_keys=True, allow_nan=False, default=str)
        if len(text) > MAX_JSON_CHARS:
            data["reason"] = self.reason[: max(0, len(self.reason) - (len(text) - MAX_JSON_CHARS) - 10)] + "…"
            text = json.dumps(data, sort_keys=True, allow_nan=False, default=str)
        return text

    @classmethod
    def from_json(cls, text: str) -> CanaryState:
        """The state `to_json` wrote. Raises `ValueError` (or `KeyError`, `TypeError`) when corrupt."""
        data = json.loads(text)
        since = datetime.fromisoformat(data["since"])
        if data["status"] not in ("running", "rolled_back", "promoted", "held"):
            raise ValueError(f"unknown status {data['status']!r}")
        history = data.get("history", [])
        if not isinstance(history, list):
            raise TypeError("history is not a list")
        return cls(
            model=str(data["model"]),
            baseline=int(data["baseline"]),
            candidate=int(data["candidate"]),
            step=int(data["step"]),
            share=float(data["share"]),
            status=data["status"],
            since=since if since.tzinfo else since.replace(tzinfo=UTC),
            revision=int(data["revision"]),
            reason=str(data["reason"]),
            history=history,
        )


@dataclass(frozen=True)
class Decision:
    """What `decide` concluded: the action, the state after it (the same one on hold), and why."""

    action: Action
    state: CanaryState
    reason: str


def start(
    model: str,
    baseline: int,
    candidate: int,
    policy: CanaryPolicy,
    now: datetime,
    *,
    previous: CanaryState | None = None,
) -> CanaryState:
    """A running canary at step 0 (share = the first step). With the model's `previous` (finished)
    canary, the revision and history continue from it."""
    first = CanaryState(
        model=model,
        baseline=baseline,
        candidate=candidate,
        step=0,
        share=policy.steps[0],
        status="running",
        since=now,
        revision=previous.revision if previous is not None else 0,
        reason=f"canary of v{candidate} against v{baseline} started at {policy.steps[0]:g} %",
        history=list(previous.history) if previous is not None else [],
    )
    return _changed(first, "start", now)


def decide(state: CanaryState, comparison: Comparison, policy: CanaryPolicy, now: datetime) -> Decision:
    """The next move of a running canary given the latest comparison (the clock is `now`).

    - `fail` → rollback: share 0, status `rolled_back`, the comparison's reasons;
    - the step held `step_seconds` and the verdict is `pass` (a `wait` never advances) → advance
      to the next step (since = now), or on the last step finish (status `promoted`: the caller
      runs the gate, and holds when it refuses or `promote` is false);
    - otherwise, or when not running: hold (the state unchanged).
    """
    if state.status != "running":
        return Decision("hold", state, f"the canary is {state.status.replace('_', ' ')}")
    numbers = dict(comparison.numbers)
    where = f"step {state.step + 1} ({state.share:g} %)"
    if comparison.verdict == "fail":
        reason = f"rolled back at {where}: " + "; ".join(comparison.reasons)
        after = replace(state, share=0.0, status="rolled_back", since=now, reason=reason)
        return Decision("rollback", _changed(after, "rollback", now, numbers), reason)
    held = (now - state.since).total_seconds()
    if comparison.verdict != "pass":
        return Decision("hold", state, f"waiting at {where}: " + "; ".join(comparison.reasons))
    if held < policy.step_seconds:
        return Decision("hold", state, f"holding {where}: {held:.0f} of {policy.step_seconds:g} s")
    steps = policy.steps
    if state.step + 1 < len(steps):
        step = state.step + 1
        reason = f"advanced to step {step + 1} ({steps[step]:g} %) after {held:.0f} s at {where}"
        after = replace(state, step=step, share=steps[step], since=now, reason=reason)
        return Decision("advance", _changed(after, "advance", now, numbers), reason)
    reason = f"passed every step: {comparison.reasons[0]}" if comparison.reasons else "passed every step"
    after = replace(state, status="promoted", since=now, reason=reason)
    return Decision("finish", _changed(after, "finish", now, numbers), reason)


def transition(state: CanaryState, status: Status, reason: str, now: datetime) -> CanaryState:
    """`state` moved to `status` by the caller (the gate refused: `held`; an operator promoted or
    rolled it back), recorded like `decide`'s moves. A rollback sets the share to 0."""
    share = 0.0 if status == "rolled_back" else state.share
    after = replace(state, status=status, share=share, since=now, reason=reason)
    return _changed(after, status, now)


def _changed(
    state: CanaryState, action: str, now: datetime, numbers: dict[str, Any] | None = None
) -> CanaryState:
    entry = {
        "at": now.isoformat(timespec="seconds"),
        "action": action,
        "status": state.status,
        "step": state.step,
        "share": state.share,
        "candidate": state.candidate,
        "reason": state.reason,
        "numbers": {
            key: _short(value) for key, value in (numbers or {}).items() if _short(value) is not None
        },
    }
    return replace(state, revision=state.revision + 1, history=[*state.history, entry][-HISTORY:])


def _short(value: Any) -> Any:
    """A number as history keeps it: 4 significant digits; None for infinity or NaN (not JSON)."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    return value


class ReleaseStore:
    """Canary state and the canary lease of each model, kept in its registered-model tags.

    The lease (`layerops.release.lease` = `{"holder", "until"}`, epoch seconds) elects the one
    process that decides. It is taken when absent, expired or already ours (a renewal), then read
    back: the last writer wins and the others see it is not theirs. Two processes can both
    believe they hold it for at most one read-back interval (both read it free, both write, the
    earlier one's read-back happened before the later write). That is safe because decisions do
    not trust the lease alone: each `save` names the revision it was decided from and is refused
    (`StaleStateError`) when the stored state moved on, so of two concurrent deciders one save
    lands and the other is refused.
    """

    def __init__(self, repository: ModelRepository, *, clock: Callable[[], float] = time.time) -> None:
        self._repository = repository
        self._clock = clock

    def load(self, name: str) -> CanaryState | None:
        """The stored canary state of `name` (None: none, or a corrupt tag, logged)."""
        text = self._repository.model_tag(name, STATE_TAG)
        if text is None:
            return None
        try:
            return CanaryState.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("the canary state of %s is corrupt (%s): ignored", name, exc)
            return None

    def save(self, state: CanaryState, *, expected_revision: int | None) -> None:
        """Store `state` if the stored revision is `expected_revision` (None: no state may be stored
        yet; a corrupt one counts as none). Raises `StaleStateError` otherwise, or when another
        writer's save replaced this one before it was read back."""
        stored = self.load(state.model)
        revision = None if stored is None else stored.revision
        if revision != expected_revision:
            found = "no state" if revision is None else f"revision {revision}"
            raise StaleStateError(
                f"canary state of {state.model}: expected revision {expected_revision}, found {found}"
            )
        text = state.to_json()
        self._repository.set_model_tag(state.model, STATE_TAG, text)
        if self._repository.model_tag(state.model, STATE_TAG) != text:
            raise StaleStateError(f"canary state of {state.model}: another writer saved at the same time")

    def clear(self, name: str) -> None:
        """Remove the canary state of `name` (nothing happens when there is none)."""
        self._repository.delete_model_tag(name, STATE_TAG)

    def lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the lease of `name` for `ttl_seconds`; whether `holder` holds it now."""
        current = self._lease_of(name)
        now = self._clock()
        if current is not None and current[0] != holder and current[1] > now:
            return False
        text = json.dumps({"holder": holder, "until": now + ttl_seconds})
        self._repository.set_model_tag(name, LEASE_TAG, text)
        after = self._lease_of(name)
        return after is not None and after[0] == holder

    def release(self, name: str, holder: str) -> None:
        """Give the lease up if `holder` holds it (a clean shutdown: another process takes over now)."""
        current = self._lease_of(name)
        if current is not None and current[0] == holder:
            self._repository.delete_model_tag(name, LEASE_TAG)

    def _lease_of(self, name: str) -> tuple[str, float] | None:
        """(holder, until) of the stored lease; None when absent or unreadable (then free)."""
        text = self._repository.model_tag(name, LEASE_TAG)
        if text is None:
            return None
        try:
            data = json.loads(text)
            return str(data["holder"]), float(data["until"])
        except (ValueError, KeyError, TypeError):
            return None
