"""Where batch input and output live: a local path or an `s3://` URL, as a pyarrow filesystem.

S3 goes through pyarrow's own `S3FileSystem` (no s3fs needed). The endpoint comes from
`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL` (the variable the
repository's MLflow artifact store already reads), the region from `AWS_REGION` /
`AWS_DEFAULT_REGION`, and the credentials from the AWS SDK's default chain (environment
variables first): a key is never a command-line argument. Dask workers resolve the same URL
from their own environment, so a URL, not a filesystem object, is what travels to them.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pyarrow import fs as pafs

from layerops.errors import DataError

_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
_DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Location:
    """A file or folder: the filesystem, the path inside it, and the URL as the user wrote it."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def local(self) -> bool:
        """On this machine's filesystem (renames are atomic; object stores have no rename)."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def url(self) -> str:
        """What names this location from any process, spelled one way: the absolute path, or the
        `s3://` URL without a trailing `/`."""
        return self.path if self.local else f"s3://{self.path}"

    def child(self, name: str) -> Location:
        """The entry `name` (may hold `/`) under this folder."""
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", f"{self.uri.rstrip('/')}/{name}")

    def info(self) -> pafs.FileInfo:
        """What is at this location (type `NotFound` when nothing); a `DataError` when unreachable."""
        try:
            return self.fs.get_file_info(self.path)
        except OSError as exc:
            raise DataError(f"cannot reach {self.uri}: {describe(exc)}") from exc


def resolve(uri: str | Path) -> Location:
    """The `Location` of a local path (made absolute, so workers resolve it alike) or `s3://` URL."""
    text = str(uri)
    if text.startswith("s3://"):
        path = text.removeprefix("s3://").rstrip("/")
        if not path or path.startswith("/"):
            raise DataError(f"bad S3 URL {text!r}: use s3://BUCKET/KEY")
        return Location(s3_filesystem(*_s3_settings()), path, text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise DataError(f"{text}: {scheme}:// is not supported; use a local path or an s3:// URL")
    local = Path(text).expanduser().absolute()
    return Location(pafs.LocalFileSystem(), local.as_posix(), text)


def _s3_settings() -> tuple[str | None, str]:
    endpoint = next((os.environ[v] for v in _ENDPOINT_VARIABLES if os.environ.get(v)), None)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or _DEFAULT_REGION
    return endpoint, region


@functools.cache
def s3_filesystem(endpoint: str | None, region: str) -> pafs.S3FileSystem:
    """One pyarrow S3 filesystem per endpoint and region (it holds a connection pool)."""
    if endpoint is None:
        return pafs.S3FileSystem(region=region)
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if not parts.netloc:
        raise DataError(f"bad S3 endpoint {endpoint!r} (from AWS_ENDPOINT_URL or MLFLOW_S3_ENDPOINT_URL)")
    return pafs.S3FileSystem(endpoint_override=parts.netloc, scheme=parts.scheme or "https", region=region)


def describe(exc: BaseException) -> str:
    """The first line of a foreign exception's message (pyarrow's can run to many lines)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
