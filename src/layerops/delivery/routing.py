"""Traffic routing: which loaded version answers a request under its model's traffic policy.

A model without a policy is answered by its served version, as before. A model with one (from
the traffic file, `PUT /admin/traffic/{name}`, or the repository where a PUT stored it) has a
`Route`: its variants' loaded versions and the `Split` of the percentages between them. A route
is immutable; a new share or a reloaded variant builds a new one and swaps the dict entry, like
the model registry does, so the request path reads it without a lock.

Assignment is sticky: the policy's key (a header or a field of the JSON row) is hashed with the
model name into a point in [0, 100) that picks the variant, so one caller meets one version for
as long as the split stays. A request without the key gets a random point (counted).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from layerops.delivery.models import ModelLoader, ModelRegistry, ServedModel
from layerops.errors import LayeropsError, NotFoundError, PolicyError
from layerops.releases.analysis import Outcome, OutcomeWindow
from layerops.releases.policy import ModelPolicy, Split, bucket

log = logging.getLogger("layerops.delivery")

SHADOW = "shadow"
"""The variant label of shadow predictions (logged, never answered)."""
LABELS_KEPT = 50_000
"""Feedback labels kept per model for the canary analysis (oldest out first)."""
WINDOW_SECONDS = 600.0
"""The longest history of outcomes kept per variant (the canary analysis reads its own window)."""
WINDOW_ITEMS = 20_000
"""The most outcomes kept per variant: each is a live object the garbage collector walks."""


@dataclass(frozen=True)
class Route:
    """One model's live routing: its policy, the split now and the loaded version of each variant."""

    policy: ModelPolicy
    split: Split
    models: Mapping[str, ServedModel | None]
    """Variant → its loaded version; None: the model's served version (what hot reload swaps)."""
    refs: Mapping[str, str]
    """Variant → the alias or version it was loaded by."""
    share: float | None = None
    """The canary's share in percent (None: not a canary policy)."""
    shadow: ServedModel | None = None

    @property
    def analysed(self) -> bool:
        """Whether each request's outcome is recorded: only a canary's analysis reads them."""
        return self.policy.canary is not None


@dataclass
class RoutingCounters:
    """What routing counted since start (read by the metrics collector)."""

    random_assignments: dict[str, int] = field(default_factory=dict)
    """Model → requests routed at random because their sticky key was missing."""


class TrafficRouter:
    """Routes requests of models with a traffic policy; loads and refreshes their variants."""

    def __init__(self, registry: ModelRegistry, loader: ModelLoader) -> None:
        self.registry = registry
        self._loader = loader
        self._routes: dict[str, Route] = {}
        self._windows: dict[tuple[str, str], OutcomeWindow] = {}
        self._lock = threading.Lock()  # installs come from the release thread and admin requests
        self.counters = RoutingCounters()
        self._random = random.random
        self._labels: dict[str, OrderedDict[str, object]] = {}

    # -- the request path ---------------------------------------------------------------------

    def pick(
        self, name: str, headers: Sequence[tuple[bytes, bytes]], json_body: bytes | None
    ) -> tuple[ServedModel, str, bool] | None:
        """The version and variant that answer a request to `name`, and whether a canary analysis
        watches its outcome (None: no policy, serve as before)."""
        route = self._routes.get(name)
        if route is None:
            return None
        sticky = route.policy.sticky
        key = None
        if sticky is not None:
            if sticky.header:
                key = header_value(headers, sticky.header)
            elif sticky.field and json_body is not None:
                key = row_field(json_body, sticky.field)
        if key is None:
            if sticky is not None:
                counts = self.counters.random_assignments
                counts[name] = counts.get(name, 0) + 1
            point = self._random() * 100.0
        else:
            point = bucket(name, key)
        variant = route.split.choose(point)
        model = route.models.get(variant)
        return (self.registry.get(name) if model is None else model), variant, route.analysed

    def shadow_of(self, name: str) -> ServedModel | None:
        """The shadow version of `name`, if its policy has one loaded."""
        route = self._routes.get(name)
        return None if route is None else route.shadow

    def observe(self, name: str, variant: str, outcome: Outcome) -> None:
        """Record one answered (or failed) request of a variant, for the canary analysis."""
        window = self._windows.get((name, variant))
        if window is not None:
            window.add(outcome)

    def remember_labels(self, name: str, labels: Mapping[str, object]) -> None:
        """Keep the true labels feedback brought (request id → label) for the canary's metric check
        (the most recent `LABELS_KEPT` per model; only models with a policy)."""
        if name not in self._routes:
            return
        with self._lock:
            kept = self._labels.setdefault(name, OrderedDict())
            kept.update(labels)
            while len(kept) > LABELS_KEPT:
                kept.popitem(last=False)

    def labels(self, name: str) -> dict[str, object]:
        """A copy of the labels kept for `name`."""
        with self._lock:
            return dict(self._labels.get(name, {}))

    # -- policies -----------------------------------------------------------------------------

    def route(self, name: str) -> Route | None:
        """The live route of `name`."""
        return self._routes.get(name)

    def routes(self) -> dict[str, Route]:
        """A snapshot of every live route."""
        return dict(self._routes)

    def window(self, name: str, variant: str) -> OutcomeWindow:
        """The outcome window of one variant of `name` (made on first use)."""
        with self._lock:
            return self._windows.setdefault((name, variant), OutcomeWindow(WINDOW_SECONDS, WINDOW_ITEMS))

    def install(self, policy: ModelPolicy, *, share: float | None = None, source: str = "") -> Route:
        """Load `policy`'s variants and make it live for its model (blocking: loads versions).

        Raises `PolicyError` naming `source` when the model is not served here or an alias the
        policy names is not set (a canary's alias may be absent: no release is in progress yet).
        The running route, if any, stays when this raises.
        """
        name = policy.name
        if name not in self.registry.refs:
            raise PolicyError(f"{source}: model {name!r} is not served here")
        current = self._routes.get(name)
        served_ref = self.registry.refs[name].ref
        models: dict[str, ServedModel | None] = {}
        refs = dict(policy.refs())
        canary_alias = policy.canary.alias if policy.canary is not None else None
        for variant, ref in refs.items():
            if ref == served_ref:
                models[variant] = None
                continue
            try:
                models[variant] = self._load(name, ref, current, variant)
            except NotFoundError as exc:
                if ref != canary_alias:
                    raise PolicyError(f"{source}: model {name!r} variant {variant!r}: {exc}") from exc
                share = 0.0  # no candidate yet (left out of `models`): no share until one exists
            except LayeropsError as exc:
                raise PolicyError(f"{source}: model {name!r} variant {variant!r} cannot load: {exc}") from exc
        shadow = None
        if policy.shadow is not None:
            try:
                shadow = self._load_shadow(name, policy.shadow.alias, current)
            except LayeropsError as exc:
                raise PolicyError(f"{source}: model {name!r} shadow: {exc}") from exc
        if policy.canary is not None and share is None:
            share = current.share if current is not None and current.policy == policy else 0.0
        route = Route(policy, policy.split(share), models, refs, share, shadow)
        for variant in route.models:
            self.window(name, variant)
        with self._lock:
            self._routes[name] = route
        return route

    def remove(self, name: str) -> bool:
        """Serve `name` without a policy again; False when it had none."""
        with self._lock:
            return self._routes.pop(name, None) is not None

    def set_share(self, name: str, share: float) -> None:
        """Route `share` percent of `name`'s traffic to its canary (no load; no-op without a canary)."""
        with self._lock:
            route = self._routes.get(name)
            if route is None or route.policy.canary is None or route.share == share:
                return
            if "canary" not in route.models and share > 0:
                share = 0.0  # nothing loaded to send it to
            self._routes[name] = replace(route, split=route.policy.split(share), share=share)

    def refresh(self) -> list[str]:
        """Re-resolve every variant's alias; load versions that moved (blocking). Returns what changed."""
        changed = []
        for name, route in self.routes().items():
            try:
                updated = self.install(route.policy, share=route.share, source="reload")
            except LayeropsError as exc:
                log.error("traffic policy of %s: keeping the loaded variants: %s", name, exc)
                continue
            before = {v: (m.version if m else None) for v, m in route.models.items()}
            after = {v: (m.version if m else None) for v, m in updated.models.items()}
            if before != after or (route.shadow and route.shadow.version) != (
                updated.shadow and updated.shadow.version
            ):
                changed.append(name)
        return changed

    def describe(self, name: str) -> dict[str, Any] | None:
        """The live policy of `name` as `GET /models/{name}` shows it (None: no policy)."""
        route = self._routes.get(name)
        if route is None:
            return None
        variants = []
        for variant, percent in route.split.weights:
            model = route.models.get(variant)
            version = model.version if model is not None else None
            if model is None and variant in route.models:
                version = self.registry.get(name).version
            variants.append(
                {"variant": variant, "ref": route.refs.get(variant), "version": version, "percent": percent}
            )
        return {
            "policy": route.policy.as_dict(),
            "variants": variants,
            "canary_share": route.share,
            "shadow": None if route.shadow is None else {"version": route.shadow.version},
        }

    def _load(self, name: str, ref: str, current: Route | None, variant: str) -> ServedModel:
        version = self._loader.resolve(name, ref)
        if current is not None:
            for held in (*current.models.values(), current.shadow):
                if held is not None and held.version == version:
                    return held  # unchanged: keep the warmed version
        served = self.registry.get(name)
        if served.version == version:
            return served
        log.warning("loading %s v%s for traffic variant %s (%s)", name, version, variant, ref)
        return self._loader.load(name, ref, version=version)

    def _load_shadow(self, name: str, alias: str, current: Route | None) -> ServedModel:
        return self._load(name, alias, current, SHADOW)


def header_value(headers: Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of header `name` (case-insensitive) in raw ASGI headers; None when absent."""
    wanted = name.lower().encode("latin-1")
    for key, value in headers:
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def row_field(body: bytes, name: str) -> str | None:
    """Field `name` of the body's (first) JSON row as text: a sticky key.

    Parses the body once more; only a policy keyed by a field calls it. None when the body is not
    a JSON object (or list of them) holding the field.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    row = data[0] if isinstance(data, list) and data else data
    value = row.get(name) if isinstance(row, dict) else None
    return None if value is None or isinstance(value, dict | list) else str(value)
