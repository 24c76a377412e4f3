"""API keys: SHA-256 digests from settings and key files, checked in constant time, and the rule that
decides whether a server may run without them."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path

from layerops.delivery.settings import ServeSettings, is_loopback
from layerops.errors import LayeropsError

log = logging.getLogger("layerops.delivery")

_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class Role(StrEnum):
    """What a valid API key may do."""

    USER = "user"
    ADMIN = "admin"


class KeyStore:
    """SHA-256 digests of user and admin API keys; a presented key is checked in constant time."""

    def __init__(self, user_digests: Iterable[str] = (), admin_digests: Iterable[str] = ()) -> None:
        self._user = tuple(dict.fromkeys(_checked_digest(d).encode("ascii") for d in user_digests))
        self._admin = tuple(dict.fromkeys(_checked_digest(d).encode("ascii") for d in admin_digests))

    @staticmethod
    def hash_key(key: str | bytes) -> str:
        """The SHA-256 hex digest under which a key is stored (what a key file holds)."""
        return hashlib.sha256(key.encode("utf-8") if isinstance(key, str) else key).hexdigest()

    @classmethod
    def from_sources(
        cls,
        keys: Sequence[str] = (),
        key_file: Path | None = None,
        admin_keys: Sequence[str] = (),
        admin_key_file: Path | None = None,
    ) -> KeyStore:
        """Plain keys (hashed here) plus key files of digests; a malformed file line is a `LayeropsError`."""
        users = [cls.hash_key(k) for k in keys if k]
        admins = [cls.hash_key(k) for k in admin_keys if k]
        if key_file is not None:
            users += _read_key_file(key_file)
        if admin_key_file is not None:
            admins += _read_key_file(admin_key_file)
        return cls(users, admins)

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (an empty store lets no request in that needs a key)."""
        return bool(self._user or self._admin)

    def check(self, key: str | bytes) -> Role | None:
        """The role of `key`, or None; every stored digest is compared, whichever matches."""
        presented = self.hash_key(key).encode("ascii")
        is_user = False
        is_admin = False
        for digest in self._user:
            is_user |= hmac.compare_digest(presented, digest)
        for digest in self._admin:
            is_admin |= hmac.compare_digest(presented, digest)
        if is_admin:
            return Role.ADMIN
        return Role.USER if is_user else None

    def __repr__(self) -> str:
        return f"KeyStore(user_keys={len(self._user)}, admin_keys={len(self._admin)})"


def _checked_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise ValueError("an API key digest must be 64 hexadecimal characters (SHA-256)")
    return digest.lower()


def _read_key_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LayeropsError(f"cannot read API key file {path}: {type(exc).__name__}") from None
    digests = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not _DIGEST.fullmatch(text):
            # Never echo the line: it may be a plain key pasted by mistake.
            raise LayeropsError(
                f"{path}:{number}: expected a SHA-256 hex digest (64 hex characters) per line; "
                "hash keys with `layerops keys hash`"
            )
        digests.append(text.lower())
    return digests


def key_store(settings: ServeSettings) -> tuple[KeyStore, bool]:
    """The API keys of the server, and whether it runs in the explicit no-auth mode.

    A key source that is configured but holds no key (an empty or all-comment key file) is a
    mistake that would silently open the server: it refuses to start. With no source at all the
    server is open only on a loopback address or with `LAYEROPS_INSECURE_NO_AUTH=true`.
    """
    keys = KeyStore.from_sources(
        settings.api_keys, settings.api_key_file, settings.admin_api_keys, settings.admin_api_key_file
    )
    sources = {
        "LAYEROPS_API_KEYS": bool(settings.api_keys),
        "LAYEROPS_API_KEY_FILE": settings.api_key_file is not None,
        "LAYEROPS_ADMIN_API_KEYS": bool(settings.admin_api_keys),
        "LAYEROPS_ADMIN_API_KEY_FILE": settings.admin_api_key_file is not None,
    }
    configured = [name for name, present in sources.items() if present]
    if keys.enabled:
        return keys, False
    if configured:
        raise LayeropsError(
            f"{' and '.join(configured)} hold no API key: refusing to serve without authentication; "
            "add a key digest (`layerops keys new`) or unset them"
        )
    if not (settings.insecure_no_auth or is_loopback(settings.host)):
        raise LayeropsError(
            f"refusing to serve on {settings.host} without API keys: set LAYEROPS_API_KEYS or "
            "LAYEROPS_API_KEY_FILE (or LAYEROPS_INSECURE_NO_AUTH=true)"
        )
    log.warning("serving without authentication: no API key is configured (host %s)", settings.host)
    return keys, True
