"""The one error hierarchy of layerops.

Every error a user can cause is a `LayeropsError` whose message is one clear line naming the
file, column or key at fault. Foreign exceptions are translated at the boundary that meets them
(`raise DataError(...) from exc`). Errors carry no HTTP status: the delivery layer maps classes
to statuses in one place.
"""


class LayeropsError(Exception):
    """Base class: a problem the user can act on, described in one line."""


class SpecError(LayeropsError):
    """The pipeline spec is invalid; the message names the key path."""


class DataError(LayeropsError):
    """The data cannot be read or is unusable (missing file, bad format, missing column)."""


class DataValidationError(DataError):
    """The data violates the spec's expectations; the message counts and shows examples."""


class TrainingError(LayeropsError):
    """Training cannot proceed (e.g. nothing left after cleaning, a single-class target)."""


class BundleError(LayeropsError):
    """A model bundle is missing, corrupt, tampered with or needs untrusted types."""


class RepositoryError(LayeropsError):
    """The model repository refused or failed an operation."""


class NotFoundError(RepositoryError):
    """A model, version or alias does not exist."""


class RepositoryUnavailableError(RepositoryError):
    """The tracking/registry backend cannot be reached."""


class InputError(LayeropsError):
    """A request's input does not fit the model's schema; `problems` name each field."""

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class OverloadedError(LayeropsError):
    """The server is at capacity; the client should retry later."""


class ModelNotReadyError(LayeropsError):
    """The model is configured but not loaded (start-up or a failed load)."""


class PolicyError(LayeropsError):
    """A traffic policy is invalid; the message names the file (or request) and the key path."""
