"""Traffic policies as data: the traffic file (`LAYEROPS_TRAFFIC_FILE` / `serve --traffic`).

```yaml
models:
  iris:
    sticky: {header: X-User-Id}            # or {field: user_id}; absent: random assignment
    canary: {alias: candidate, steps: [5, 25, 50, 100], step_seconds: 60, promote: true,
             analysis: {window_seconds: 60, min_requests: 100, ...}}
    shadow: {alias: shadow, queue_size: 1000}
  shipping:
    ab: {variants: [{name: a, alias: production, weight: 50}, {name: b, version: 3, weight: 50}]}
```

A model has at most one of `canary` / `ab`, optionally a `shadow` and a `sticky` key. Every
mistake is one `PolicyError` line naming the source and the key path. Whether the aliases exist
is the server's check (it has the repository): `ModelPolicy.aliases()` lists them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from layerops.errors import PolicyError
from layerops.releases._policy_input import At, UniqueKeyLoader, describe, path_of
from layerops.releases.assignment import Split, bucket, choose

__all__ = [
    "AbPolicy",
    "Analysis",
    "CanaryPolicy",
    "ModelPolicy",
    "PolicyError",
    "ShadowPolicy",
    "Split",
    "Sticky",
    "TrafficPolicies",
    "Variant",
    "bucket",
    "choose",
    "load_policies",
    "parse_model_policy",
    "parse_policies",
]

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A model, variant or alias name."""
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
PRODUCTION = "production"
"""The alias that serves callers (and the canary's baseline)."""
BASELINE, CANARY = "baseline", "canary"
"""The variant names of a canary policy."""
RESERVED_VARIANTS = frozenset({"shadow"})
"""Variant names an A/B test may not use (the shadow's metrics go by this name)."""


def _checked_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not 1 to 64 letters, digits, '_' or '-'")
    return value


def _checked_alias(value: str) -> str:
    _checked_name(value, "the alias")
    if value.isdigit():
        raise ValueError(f"{value!r} is a version number, not an alias")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Sticky(_Strict):
    """What keeps a caller on one variant: exactly one of a request header or a JSON row field."""

    header: str | None = None
    """An HTTP header, matched case-insensitively (e.g. `X-User-Id`)."""
    field: str | None = Field(None, min_length=1, max_length=256)
    """A field of the request's (first) JSON row (e.g. `user_id`)."""

    @model_validator(mode="after")
    def _one(self) -> Sticky:
        if (self.header is None) == (self.field is None):
            raise ValueError("give exactly one of 'header' or 'field'")
        if self.header is not None and not _HEADER.fullmatch(self.header):
            raise At("header", f"{self.header!r} is not an HTTP header name")
        return self


class Analysis(_Strict):
    """The canary's thresholds, compared over a sliding window (see `releases.analysis`)."""

    window_seconds: float = Field(60.0, gt=0)
    min_requests: int = Field(100, ge=1)
    """Canary (and baseline) requests in the window before any verdict."""
    max_error_rate_increase: float = Field(0.01, ge=0, le=1)
    max_p99_ratio: float = Field(1.5, ge=1)
    min_p99_increase_ms: float = Field(10.0, ge=0)
    """The p99 is worse only when both the ratio and this absolute increase are exceeded."""
    max_metric_drop: float | None = Field(0.05, ge=0)
    """Accuracy/f1 points lost, or the relative rmse/mae increase, on labelled rows (None: off)."""
    min_labelled: int = Field(50, ge=1)
    max_prediction_distance: float | None = Field(0.3, gt=0, le=1)
    """Jensen–Shannon distance (base 2, in [0, 1]) of the predicted distributions (None: off)."""


class CanaryPolicy(_Strict):
    """A gradual release of `alias` against production, step by step, analysed at each step."""

    alias: str = "candidate"
    steps: Annotated[tuple[Annotated[float, Strict()], ...], Strict(False)] = (5.0, 25.0, 50.0, 100.0)
    """Percent of traffic to the canary: strictly increasing, each in (0, 100], the last 100."""
    step_seconds: float = Field(60.0, ge=0)
    """How long each step must hold (with a passing analysis) before the next."""
    promote: bool = True
    """After the last step, promote the canary through the gate (false: hold there)."""
    analysis: Analysis = Analysis()

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        if _checked_alias(value) == PRODUCTION:
            raise ValueError(f"the canary is {PRODUCTION!r}, the baseline's alias")
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps:
            raise ValueError("give at least one step (the last is 100)")
        for i, step in enumerate(steps):
            if not 0 < step <= 100:
                raise ValueError(f"step {step:g} is not in (0, 100]")
            if i and step <= steps[i - 1]:
                raise ValueError(f"steps must strictly increase: {steps[i - 1]:g} then {step:g}")
        if steps[-1] != 100:
            raise ValueError(f"the last step is {steps[-1]:g}, not 100")
        return steps


class Variant(_Strict):
    """One arm of an A/B test: a name, exactly one of an alias or a version, and a weight."""

    name: str
    alias: str | None = None
    version: int | None = Field(None, ge=1)
    weight: float = Field(ge=0, le=100)
    """Percent of traffic."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        _checked_name(value, "the variant name")
        if value in RESERVED_VARIANTS:
            raise ValueError(f"{value!r} is a reserved variant name")
        return value

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str | None) -> str | None:
        return None if value is None else _checked_alias(value)

    @model_validator(mode="after")
    def _one_ref(self) -> Variant:
        if (self.alias is None) == (self.version is None):
            raise ValueError("give exactly one of 'alias' or 'version'")
        return self

    @property
    def ref(self) -> str:
        """The model ref to load: the alias, or the version number as a string."""
        return self.alias if self.alias is not None else str(self.version)


class AbPolicy(_Strict):
    """An A/B test: fixed weights over two or more variants."""

    variants: Annotated[tuple[Variant, ...], Strict(False)]

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        if len(variants) < 2:
            raise ValueError(f"an A/B test needs at least two variants, got {len(variants)}")
        seen: set[str] = set()
        for variant in variants:
            if variant.name in seen:
                raise ValueError(f"variant name {variant.name!r} appears twice")
            seen.add(variant.name)
        total = sum(variant.weight for variant in variants)
        if abs(total - 100) > 1e-6:
            raise ValueError(f"weights sum to {total:g}, not 100")
        return variants


class ShadowPolicy(_Strict):
    """A model that gets a copy of the traffic off the request path; callers never see it."""

    alias: str = "shadow"
    """The alias shadowed: never `production`, nor an alias a canary or A/B variant serves."""
    queue_size: int = Field(1000, ge=1, le=1_000_000)
    """Requests waiting for the shadow; beyond it copies are dropped (and counted)."""

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        if _checked_alias(value) == PRODUCTION:
            raise ValueError(f"the shadow is {PRODUCTION!r}, the alias that serves callers")
        return value


class ModelPolicy(_Strict):
    """How one model's traffic is split: plain production, a canary, or an A/B test."""

    name: str
    sticky: Sticky | None = None
    """Absent: every request is assigned at random."""
    canary: CanaryPolicy | None = None
    ab: AbPolicy | None = None
    shadow: ShadowPolicy | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _checked_name(value, "the model name")

    @model_validator(mode="after")
    def _consistent(self) -> ModelPolicy:
        if self.canary is not None and self.ab is not None:
            raise ValueError("give at most one of 'canary' or 'ab'")
        if self.shadow is not None:
            served = {BASELINE: PRODUCTION, CANARY: self.canary.alias} if self.canary else {}
            served.update({v.name: v.alias for v in self.ab.variants if v.alias} if self.ab else {})
            for variant, alias in served.items():
                if alias == self.shadow.alias:
                    where = "the canary's alias" if variant == CANARY else f"the alias of variant {variant!r}"
                    raise At("shadow.alias", f"the shadow is {alias!r}, {where}")
        return self

    @property
    def mode(self) -> Literal["canary", "ab", "plain"]:
        """Which split the policy makes."""
        return "canary" if self.canary else "ab" if self.ab else "plain"

    def refs(self) -> dict[str, str]:
        """Variant name → the model ref to load (an alias, or a version as a string). The shadow
        is not a variant: see `shadow.alias`."""
        if self.canary is not None:
            return {BASELINE: PRODUCTION, CANARY: self.canary.alias}
        if self.ab is not None:
            return {variant.name: variant.ref for variant in self.ab.variants}
        return {PRODUCTION: PRODUCTION}

    def weights(self, canary_share: float | None = None) -> list[tuple[str, float]]:
        """Variant → percent (summing to 100), in the order `Split` lays them out.

        Canary: `[("baseline", 100 - share), ("canary", share)]` with the live share from the
        canary state machine; `None` means 0: the canary gets no traffic until the state machine
        says so (a canary with no running state serves nobody). The share is ignored otherwise.
        """
        if self.canary is not None:
            share = 0.0 if canary_share is None else float(canary_share)
            if not 0 <= share <= 100:
                raise ValueError(f"canary share {share:g} is not a percent")
            return [(BASELINE, 100.0 - share), (CANARY, share)]
        if self.ab is not None:
            return [(variant.name, variant.weight) for variant in self.ab.variants]
        return [(PRODUCTION, 100.0)]

    def split(self, canary_share: float | None = None) -> Split:
        """The `Split` of `weights(canary_share)`: make it once per change, `choose` per request."""
        return Split.of(self.weights(canary_share))

    def aliases(self) -> set[str]:
        """Every alias the policy names (the shadow's included); versions are not aliases."""
        names = {ref for ref in self.refs().values() if not ref.isdigit()}
        return names | ({self.shadow.alias} if self.shadow else set())

    def as_dict(self) -> dict[str, Any]:
        """The policy as JSON-ready data, every default spelled out: what `GET /models/{name}`
        shows and what `PUT /admin/traffic/{name}` (`parse_model_policy`) takes back."""
        data = self.model_dump(mode="json", exclude={"name"})
        if self.sticky is not None:
            data["sticky"] = {k: v for k, v in data["sticky"].items() if v is not None}
        for variant in data["ab"]["variants"] if self.ab else []:
            variant.pop("version" if variant["version"] is None else "alias")
        return {key: value for key, value in data.items() if value is not None}


class TrafficPolicies(Mapping[str, ModelPolicy]):
    """Model name → `ModelPolicy`, read from `source` (immutable; `with_policy` makes a copy)."""

    def __init__(self, policies: Mapping[str, ModelPolicy], source: str = "") -> None:
        self._policies = dict(policies)
        self.source = source

    def __getitem__(self, name: str) -> ModelPolicy:
        return self._policies[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)

    def __repr__(self) -> str:
        return f"TrafficPolicies({sorted(self._policies)!r}, source={self.source!r})"

    def with_policy(self, policy: ModelPolicy) -> TrafficPolicies:
        """A copy with `policy` added or replacing the model's previous one."""
        return TrafficPolicies({**self._policies, policy.name: policy}, self.source)

    def as_dict(self) -> dict[str, Any]:
        """The whole file as data (`parse_policies` reads it back)."""
        return {"models": {name: policy.as_dict() for name, policy in self._policies.items()}}


def parse_model_policy(name: str, data: object, source: str) -> ModelPolicy:
    """Validate one model's policy (`None` or `{}`: plain production). Key paths in errors are
    relative to the policy (`canary.steps`); `source` names where it came from, e.g.
    `PUT /admin/traffic/iris`. Raises `PolicyError`."""
    return _model_policy(name, data, source, "")


def parse_policies(data: object, source: str) -> TrafficPolicies:
    """Validate a parsed traffic file (`{"models": {name: policy}}`). Raises `PolicyError`."""
    if data is None:
        raise PolicyError(f"{source}: the file is empty (expected a 'models' mapping)")
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping with a 'models' key, got {type(data).__name__}")
    for key in data:
        if key != "models":
            raise PolicyError(f"{source}: {key}: unknown key (expected 'models')")
    models = data.get("models")
    if not isinstance(models, dict):
        got = "nothing" if models is None else type(models).__name__
        raise PolicyError(f"{source}: models: expected a mapping of model name → policy, got {got}")
    policies = {
        str(name): _model_policy(str(name), policy, source, f"models.{name}")
        for name, policy in models.items()
    }
    return TrafficPolicies(policies, source)


def load_policies(path: str | Path) -> TrafficPolicies:
    """Read and validate a traffic file. Raises `PolicyError` (missing file, YAML syntax with its
    line, or any invalid key)."""
    file = Path(path)
    if not file.is_file():
        raise PolicyError(f"{file}: traffic file not found")
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise PolicyError(f"{file}: not valid YAML{where}" + (f" ({problem})" if problem else "")) from None
    except UnicodeDecodeError:
        raise PolicyError(f"{file}: not a UTF-8 text file") from None
    return parse_policies(data, str(file))


def _model_policy(name: str, data: object, source: str, prefix: str) -> ModelPolicy:
    where = f"{source}: {prefix}: " if prefix else f"{source}: "
    if not NAME.fullmatch(name):
        raise PolicyError(f"{where}the model name {name!r} is not 1 to 64 letters, digits, '_' or '-'")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{where}a policy is a mapping of keys, got {type(data).__name__}")
    if "name" in data:
        raise PolicyError(f"{source}: {prefix + '.' if prefix else ''}name: unknown key")
    try:
        return ModelPolicy.model_validate({**data, "name": name})
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        path = path_of(prefix, first)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PolicyError(f"{source}: {path + ': ' if path else ''}{describe(first)}{more}") from None
