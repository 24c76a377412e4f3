"""The PromQL expressions of deploy/: every alert rule's and every Grafana panel's, and the one
rewrite that lets a test ask Prometheus for their series regardless of thresholds."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.deploy.stack import DEPLOY, yaml_documents

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "layerops.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".+"}
"""What Grafana puts in place of the dashboard's variables: a rate window of 4+ scrapes, and the
`model` variable's "All" value (its `allValue`)."""
_COMPARISON = re.compile(r"==|!=|>=|<=|>|<")
_LABEL_VALUES = re.compile(r"label_values\((?P<selector>[^,]+),\s*(?P<label>\w+)\)")
METRIC_NAME = re.compile(r"\blayerops_[a-z0-9_]+\b")


@dataclass(frozen=True)
class Expression:
    """One PromQL expression of a deploy file, and where it is."""

    where: str
    promql: str


def alert_expressions() -> list[Expression]:
    """Every rule of deploy/prometheus/alerts.yml."""
    (rules,) = yaml_documents(ALERTS)
    return [
        Expression(f"alerts.yml {group['name']}/{rule['alert']}", rule["expr"].strip())
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard, parsed."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_expressions() -> list[Expression]:
    """Every panel target's expression, and the metric selector of each `label_values` variable,
    with Grafana's variables replaced as Grafana would (`GRAFANA_VARIABLES`)."""
    board = dashboard()
    found = [
        Expression(f"layerops.json panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]
    for variable in board["templating"]["list"]:
        match = _LABEL_VALUES.fullmatch(variable["query"]["query"])
        assert match is not None, f"variable {variable['name']}: not a label_values(metric, label) query"
        found.append(Expression(f"layerops.json variable ${variable['name']}", match["selector"]))
    return [Expression(e.where, grafana_to_promql(e.promql)) for e in found]


def grafana_to_promql(expr: str) -> str:
    """`expr` with the dashboard's Grafana variables replaced (`GRAFANA_VARIABLES`)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the tests do not know: {expr}"
    return expr


def without_thresholds(expr: str) -> str:
    """`expr` with every comparison made a `bool` one: `x > 0.05` becomes `x > bool 0.05`.

    A filtering comparison drops the series that do not pass its threshold, so an alert that is
    quiet returns nothing; with `bool` it returns every series of `x`, valued 0 or 1. The rest of
    the expression (selectors, label matchers, ranges, aggregations) is left exactly as written, so
    a series found this way is one the alert evaluates. Matchers inside `{...}` and strings are
    untouched (`!=` there is a label matcher).
    """
    out: list[str] = []
    depth, i, quote = 0, 0, ""
    while i < len(expr):
        char = expr[i]
        if quote:
            out.append(expr[i : i + 2] if char == "\\" else char)
            i += 2 if char == "\\" else 1
            quote = "" if char == quote else quote
            continue
        comparison = _COMPARISON.match(expr, i) if depth == 0 else None
        if comparison is not None:
            out.append(comparison.group())
            i = comparison.end()
            if not re.match(r"\s*bool\b", expr[i:]):
                out.append(" bool")
            continue
        if char in "\"'`":
            quote = char
        depth += {"{": 1, "}": -1}.get(char, 0)
        out.append(char)
        i += 1
    return "".join(out)
