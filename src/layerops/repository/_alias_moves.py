"""Alias moves that agree with their recorded history when several processes move one alias.

An alias and its history entry (a registered-model tag, see `_history`) are two writes MLflow
cannot make atomically, and it offers no compare-and-set. Setting the alias first and appending
the entry after let concurrent writers land the two writes in different orders: eight
`layerops models promote` at once through a tracking server left `production` on v3 while the
history's last entry said v8, and `rollback` then refused the alias as moved outside layerops.

So the history decides and the alias follows. A move appends its entry first (a key that sorts
after every entry the writer saw), then points the alias at the version of the history's *last
entry for that alias* as read now, and reads again until alias and last entry agree. Whichever
alias write lands last, its writer reads afterwards and corrects the alias; so once the writers
are done, the alias stands where the last entry says. That entry is the "last writer": writers
that read the same history share a sequence number, and their random nonces order them, the
same way for every reader. An entry's `previous` stays what its writer saw when it decided.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities.model_registry import RegisteredModel
from mlflow.exceptions import MlflowException

from layerops.errors import RepositoryError
from layerops.repository import _history
from layerops.repository.api import AliasChange

SETTLE_ROUNDS = 20
"""Most read-and-correct rounds one move makes; each round that changes something follows a
write by another process, so eight concurrent writers settle in a few."""


class AliasMoves:
    """Moves aliases through one `MlflowClient`, history entry first (see the module)."""

    def __init__(self, client: MlflowClient) -> None:
        """Write through `client`."""
        self._client = client

    def apply(self, model: RegisteredModel, change: AliasChange) -> None:
        """Record `change` in the history of `model` (as read just before the change was decided),
        then settle the alias on the history's last entry. Raises MLflow's exceptions; when the
        alias cannot be settled, the entry is taken back (best effort) before raising."""
        key = _history.next_key(dict(model.tags or {}))
        self._client.set_registered_model_tag(model.name, key, _history.encode(change))
        try:
            self._settle(model.name, change.alias)
        except BaseException:
            self._forget(model.name, key)
            raise

    def _settle(self, name: str, alias: str) -> None:
        failure: MlflowException | None = None
        for _ in range(SETTLE_ROUNDS):
            model = self._client.get_registered_model(name)
            entries = [c for c in _history.decode(name, dict(model.tags or {})) if c.alias == alias]
            if not entries:  # our own entry is gone: taken back by a failing writer's cleanup
                return
            wanted = entries[-1].version
            current = (model.aliases or {}).get(alias)
            if (None if current is None else int(current)) == wanted:
                return
            try:
                self._point(name, alias, wanted)
            except MlflowException as exc:  # two first writers of one alias collide on its row
                failure = exc
        if failure is not None:
            raise failure
        raise RepositoryError(
            f"model {name!r}: alias {alias!r} did not settle after {SETTLE_ROUNDS} rounds "
            "(other processes keep moving it); its history records this change, run the command "
            "again to move it"
        )

    def _point(self, name: str, alias: str, version: int | None) -> None:
        if version is None:
            self._client.delete_registered_model_alias(name, alias)
        else:
            self._client.set_registered_model_alias(name, alias, str(version))

    def _forget(self, name: str, key: str) -> None:
        try:
            self._client.delete_registered_model_tag(name, key)
        except Exception:  # noqa: S110 - best effort: the settling error is raised instead
            pass
