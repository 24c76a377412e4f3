"""Prometheus series of releases: canary shares and states, rollbacks, random routing, shadow outcomes."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from layerops.delivery.routing import TrafficRouter
from layerops.delivery.shadow import ShadowRunner

CANARY_STATUSES = ("running", "rolled_back", "promoted", "held")


def rollback_counter(registry: CollectorRegistry) -> Counter:
    """`layerops_rollbacks_total{model}`: canaries this process rolled back."""
    return Counter(
        "layerops_rollbacks_total",
        "Canary releases rolled back automatically (counted by the process that decided).",
        ["model"],
        registry=registry,
    )


class ReleaseCollector(Collector):
    """Routing, shadow and canary series, read from the router at scrape time."""

    def __init__(self, router: TrafficRouter, shadows: ShadowRunner, releases: object) -> None:
        self._router = router
        self._shadows = shadows
        self._releases = releases

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        share = GaugeMetricFamily(
            "layerops_traffic_share_percent",
            "Percent of a model's traffic routed to each variant by its policy.",
            labels=["model", "variant", "version"],
        )
        for name, route in sorted(self._router.routes().items()):
            for variant, percent in route.split.weights:
                model = route.models.get(variant)
                version = model.version if model is not None else None
                if model is None and variant in route.models:
                    version = self._router.registry.get(name).version
                share.add_metric([name, variant, "" if version is None else str(version)], percent)
        yield share
        canary = GaugeMetricFamily(
            "layerops_canary_status",
            "The canary state of each model (1 for its status), with the candidate version.",
            labels=["model", "candidate", "status"],
        )
        states = getattr(self._releases, "states", {})
        for name, state in sorted(states.items()):
            if state is not None:
                for status in CANARY_STATUSES:
                    canary.add_metric(
                        [name, str(state.candidate), status], 1.0 if state.status == status else 0.0
                    )
        yield canary
        random = CounterMetricFamily(
            "layerops_routing_random",
            "Requests routed at random because the policy's sticky key was missing from them.",
            labels=["model"],
        )
        for name, count in sorted(self._router.counters.random_assignments.items()):
            random.add_metric([name], count)
        yield random
        shadow = CounterMetricFamily(
            "layerops_shadow_requests",
            "Copies of requests sent to a shadow version, by outcome (ok, error, dropped: queue full).",
            labels=["model", "outcome"],
        )
        for (name, outcome), count in sorted(self._shadows.counters.counts.items()):
            shadow.add_metric([name, outcome], count)
        yield shadow
        failures = CounterMetricFamily(
            "layerops_traffic_reload_failures",
            "Traffic policies refused on reload (the running policy stayed).",
        )
        failures.add_metric([], getattr(self._releases, "reload_failures", 0))
        yield failures
