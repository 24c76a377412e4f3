"""Release events and release state tags on MLflow registered models.

Events are kept like the alias history (`_history`: one tag per event, never overwritten); state
tags (`layerops.release.*`) are plain registered-model tags the releases layer reads and writes,
e.g. a canary's state and its lease.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import RegisteredModel
from mlflow.exceptions import MlflowException

from layerops.repository import _history
from layerops.repository._boundary import translated
from layerops.repository.api import RELEASE_TAG_PREFIX, ReleaseEvent

EVENT_KIND = re.compile(r"[a-z0-9_.-]{1,64}")
"""What an event's `kind` may be: a short machine-readable word."""


class ReleaseRecords:
    """Release events and state tags of registered models, through one `MlflowClient`."""

    def __init__(self, client: MlflowClient, uri: str) -> None:
        """Work through `client` (talking to `uri`)."""
        self._client = client
        self._uri = uri

    def _model(self, name: str) -> RegisteredModel:
        with translated(
            self._uri, f"reading model {name!r}", not_found=f"no registered model named {name!r}"
        ):
            return self._client.get_registered_model(name)

    def record_event(
        self, name: str, kind: str, message: str, details: dict[str, Any] | None = None
    ) -> ReleaseEvent:
        """Record a release event of model `name` (one new tag). `ValueError` for a `kind` that is
        not a short word; `NotFoundError` for an unknown model."""
        if not EVENT_KIND.fullmatch(kind):
            raise ValueError(f"release event kind {kind!r} is not a short word of [a-z0-9_.-]")
        model = self._model(name)
        event = ReleaseEvent(name, kind, datetime.now(UTC), message, dict(details or {}))
        key = _history.next_key(dict(model.tags or {}), _history.EVENT_PREFIX)
        with translated(self._uri, f"recording a {kind} event of model {name!r}"):
            self._client.set_registered_model_tag(name, key, _history.encode_event(event))
        return event

    def events(self, name: str) -> list[ReleaseEvent]:
        """Every release event of `name`, oldest first. Raises `NotFoundError`."""
        return _history.decode_events(name, dict(self._model(name).tags or {}))

    def model_tag(self, name: str, key: str) -> str | None:
        """The release state tag `key` of model `name`, or None. Raises `NotFoundError`."""
        check_release_key(key)
        value = (self._model(name).tags or {}).get(key)
        return None if value is None else str(value)

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set the release state tag `key` of model `name`. Raises `NotFoundError`."""
        check_release_key(key)
        self._model(name)
        with translated(self._uri, f"setting tag {key!r} of model {name!r}"):
            self._client.set_registered_model_tag(name, key, value)

    def delete_model_tag(self, name: str, key: str) -> None:
        """Remove the release state tag `key` of model `name` (unset: nothing happens)."""
        check_release_key(key)
        if key not in (self._model(name).tags or {}):
            return
        with translated(self._uri, f"deleting tag {key!r} of model {name!r}"):
            try:
                self._client.delete_registered_model_tag(name, key)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # another writer deleted it first
                    raise


def check_release_key(key: str) -> None:
    """Refuse (`ValueError`) a state tag key outside `layerops.release.`."""
    if not key.startswith(RELEASE_TAG_PREFIX) or len(key) == len(RELEASE_TAG_PREFIX):
        raise ValueError(f"release state tag {key!r} must start with {RELEASE_TAG_PREFIX!r}")
