"""Server settings: `LAYEROPS_*` environment variables and `layerops serve` flags."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from layerops.delivery.batching import BatchPolicy
from layerops.numbers import parse_natural
from layerops.settings import Settings

DEFAULT_ALIAS = "production"
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_NAME = re.compile(r"[^/@\x00-\x1f\x7f]{1,255}")


@dataclass(frozen=True)
class ModelRef:
    """A served model: its name and a version number or an alias (`iris@production`, `shipping@3`)."""

    name: str
    ref: str

    @property
    def version(self) -> int | None:
        """The pinned version number, or None when `ref` is an alias."""
        return parse_natural(self.ref)

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """`name`, `name@alias` or `name@version`; a bare name means the production alias.

        A version is ASCII digits; an alias is ASCII letters, digits, `_` and `-` (what MLflow
        takes); a name has no `/`, `@` or control character. Anything else is a `ValueError`.
        """
        name, _, ref = text.strip().partition("@")
        usage = "use NAME, NAME@ALIAS or NAME@VERSION"
        if not name or (ref == "" and "@" in text):
            raise ValueError(f"bad model reference {text!r}: {usage}")
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"bad model reference {text!r}: a model name has no '/', '@' or control character"
            )
        if ref and not (parse_natural(ref) is not None or _ALIAS.fullmatch(ref)):
            raise ValueError(
                f"bad model reference {text!r}: a version is ASCII digits (e.g. @3) and an alias is "
                "ASCII letters, digits, '_' and '-' (e.g. @production)"
            )
        return cls(name, ref or DEFAULT_ALIAS)

    def __str__(self) -> str:
        return f"{self.name}@{self.ref}"


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class BatchingOverride(BaseModel):
    """One model's departures from the server-wide batching settings (unset fields inherit them)."""

    model_config = ConfigDict(extra="forbid")

    batching: bool | None = None
    max_batch_size: int | None = Field(default=None, ge=1)
    max_latency_ms: float | None = Field(default=None, ge=0, le=1000)
    max_queue_rows: int | None = Field(default=None, ge=1)
    batch_concurrency: int | None = Field(default=None, ge=1, le=256)


class ServeSettings(Settings):
    """Everything `layerops serve` needs; built at the entry point, never at import time."""

    models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Models to serve, comma-separated `NAME[@ALIAS|@VERSION]`; empty: every model with a
    `production` alias."""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    """Comma-separated API keys for the predict and read routes."""
    api_key_file: Path | None = None
    """A file of SHA-256 hex digests of API keys, one per line."""
    admin_api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    """Comma-separated keys that may also call `/admin/*`."""
    admin_api_key_file: Path | None = None
    metrics_public: bool = False
    """Serve `/metrics` without a key."""
    docs_public: bool = True
    """Serve `/docs`, `/redoc` and `/openapi.json` (the request schemas) without a key."""
    insecure_no_auth: bool = False
    """Allow serving on a non-loopback address without any API key (not recommended)."""
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """Longest a connection may take to send a request's headers (from connecting, or from the
    first byte of a request on a kept-alive connection); slower connections are closed."""
    model_timeouts: dict[str, float] = Field(default_factory=dict)
    """Per-model timeout overrides in seconds, e.g. `{"shipping": 5}`."""
    max_body_bytes: int = Field(default=10 * 2**20, gt=0)
    max_batch_rows: int = Field(default=10_000, gt=0)
    max_fields: int = Field(default=1024, gt=0)
    """Most fields (JSON keys, columns, CSV columns, V2 tensors) one request row may carry; more is
    refused before the work that would scale with them (never below the model's own count)."""
    extra_fields: Literal["forbid", "ignore"] = "forbid"
    """What to do with request fields the model does not know."""
    on_demand_versions: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Versions the `/versions/{v}` routes may load on demand besides the served ones,
    comma-separated: `NAME@V`, `NAME@*` (every version of NAME) or `*`. Empty: only the versions
    being served answer; any other is a 404, so no key can make the server download a version."""
    pinned_cache_size: int = Field(default=4, ge=1, le=64)
    """Versions loaded on demand that stay loaded (least recently used first out)."""
    reload_interval_seconds: float = Field(default=30.0, ge=0)
    """How often to poll aliases for new versions; 0 disables polling (`/admin/reload` still works)."""
    start_degraded: bool = False
    """Start even if a model cannot load; `/health/ready` reports it."""
    engine: Literal["auto", "onnx", "native"] = "auto"
    """auto: ONNX Runtime where the bundle has a validated export, else the native model."""
    onnx_threads: int = Field(default=1, ge=1, le=256)
    """ONNX Runtime intra-op threads per model session: 1 is best for latency with one worker per
    core; more speeds up large requests on a machine with idle cores."""
    inference_threads: int = Field(default=4, ge=1, le=256)
    """Worker threads for inference per process; bounds concurrent model calls."""
    warm_rows: int = Field(default=5, ge=0)
    inline_budget_ms: float = Field(default=1.0, ge=0, le=100)
    """Engine calls measured (at load) to take at most this long run on the event loop instead of
    the inference thread pool: a thread hop costs ~0.1 ms, more than a fast ONNX model's whole
    call. 0 sends every call to the pool."""
    batching: bool = True
    """Micro-batching: concurrent requests to one model version share one engine call."""
    max_batch_size: int = Field(default=64, ge=1)
    """Most rows in one batched engine call (a larger request runs alone, never split)."""
    max_latency_ms: float = Field(default=2.0, ge=0, le=1000)
    """Longest a queued request waits for others to join its batch, in milliseconds; a lone
    request never waits."""
    max_queue_rows: int = Field(default=4096, ge=1)
    """Rows that may wait per model version; beyond, requests get 503 with Retry-After."""
    batch_concurrency: int = Field(default=1, ge=1, le=256)
    """Batches of one model version that may run at once when batching (at most
    `inference_threads`); raise it for heavy ONNX models on many cores. With batching off, up
    to `inference_threads - 1` requests of one model run at once (one thread stays for the others)."""
    model_batching: dict[str, BatchingOverride] = Field(default_factory=dict)
    """Per-model overrides as JSON, e.g. `{"shipping": {"max_batch_size": 16, "batching": false}}`."""
    prediction_log_sample_rate: float = Field(default=1.0, ge=0, le=1)
    """Share of requests logged (chosen by a hash of the request id)."""
    prediction_log_sample_rates: dict[str, float] = Field(default_factory=dict)
    """Per-model sampling rates as JSON, e.g. `{"shipping": 0.1}`."""
    prediction_log_queue_rows: int = Field(default=65_536, ge=1)
    """Rows that may wait for the log writer; beyond, rows are dropped and counted (never blocks)."""
    prediction_log_rotate_seconds: float = Field(default=60.0, gt=0)
    """A Parquet log file is closed (and readable by `layerops drift`) after this long at most."""
    drift_interval_seconds: float = Field(default=60.0, ge=0)
    """How often the server computes drift over each model's recent logged rows (0: never)."""
    traffic_file: Path | None = None
    """Traffic policies (canary, A/B, shadow) per model, YAML; re-read when it changes."""
    release_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    """How often each worker reads the canary state and the lease holder analyses and decides."""
    release_lease_seconds: float = Field(default=10.0, gt=0, le=3600)
    """How long a worker's lease on the canary decisions lasts without renewal (another takes
    over after it, e.g. when the holder died)."""
    drift_window_rows: int = Field(default=10_000, ge=10)
    """Most recent logged rows per model version the server's drift check reads (kept in memory)."""

    @field_validator("models", "api_keys", "admin_api_keys", "on_demand_versions", mode="before")
    @classmethod
    def _comma_lists(cls, value: object) -> object:
        return _split(value)

    @field_validator("prediction_log_sample_rates")
    @classmethod
    def _valid_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for name, rate in value.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"the sampling rate of {name!r} must be between 0 and 1, got {rate}")
        return value

    def logs_predictions(self) -> bool:
        """Whether served predictions are logged at all."""
        return self.prediction_log.strip().lower() != "off"

    @field_validator("models")
    @classmethod
    def _valid_refs(cls, value: list[str]) -> list[str]:
        for item in value:
            ModelRef.parse(item)
        return value

    @field_validator("on_demand_versions")
    @classmethod
    def _valid_version_patterns(cls, value: list[str]) -> list[str]:
        for item in value:
            name, at, version = item.partition("@")
            if item != "*" and not (name and at and (version == "*" or parse_natural(version) is not None)):
                raise ValueError(f"bad on-demand version {item!r}: use NAME@VERSION, NAME@* or *")
        return value

    def allows_on_demand(self, name: str, version: int) -> bool:
        """Whether a request may make the server load version `version` of `name` on demand."""
        allowed = set(self.on_demand_versions)
        return bool({"*", f"{name}@*", f"{name}@{version}"} & allowed)

    def model_refs(self) -> list[ModelRef]:
        """The configured model references (empty: discover every `production` alias)."""
        return [ModelRef.parse(item) for item in self.models]

    def batching_for(self, name: str) -> BatchPolicy:
        """The batching policy of model `name`: the server-wide settings with its overrides."""
        override = self.model_batching.get(name, BatchingOverride())

        def pick(field: str) -> Any:
            value = getattr(override, field)
            return getattr(self, field) if value is None else value

        enabled: bool = pick("batching")
        threads = self.inference_threads
        # Unbatched, a model may run calls on all threads but one: a model that hangs must not
        # take every thread the other models need.
        concurrency = min(pick("batch_concurrency"), threads) if enabled else max(1, threads - 1)
        return BatchPolicy(
            enabled=enabled,
            max_batch_size=pick("max_batch_size"),
            max_latency_ms=pick("max_latency_ms"),
            max_queue_rows=pick("max_queue_rows"),
            concurrency=concurrency,
        )


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or `localhost`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
