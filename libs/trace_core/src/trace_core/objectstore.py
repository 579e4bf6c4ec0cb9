"""One interface over where Parquet lives: a local directory (the embedded default) or S3 (SPEC §1, §5).

Keys are the paths of `trace_core.storage` (`org/…/dataset/…/version/…/{start}_{end}.parquet`). Every put is
atomic: a reader sees the old object or the new one, never a half-written file (a local put writes a temporary
file and renames it; an S3 PUT is atomic by itself).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from trace_core.settings import Settings


class ObjectStore(Protocol):
    root: str
    """`s3://bucket/prefix` or an absolute local directory: what `url()` joins keys to."""

    async def put_file(self, key: str, source: Path) -> None:
        """Store the file `source` under `key`, replacing what was there."""

    async def get_file(self, key: str, target: Path) -> bool:
        """Copy `key` to the file `target`; False when there is no such object."""

    async def list_keys(self, prefix: str) -> list[str]:
        """Keys under `prefix` (a folder: no trailing slash needed), sorted."""

    async def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""

    def url(self, key: str) -> str:
        """Where DuckDB (and people) read `key`: an absolute path, or an `s3://` URL."""

    async def close(self) -> None: ...


def _clean_key(key: str) -> str:
    parts = key.strip("/").split("/")
    if not key.strip("/") or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"invalid object key {key!r}")
    return "/".join(parts)


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve())

    def _path(self, key: str) -> Path:
        return Path(self.root) / _clean_key(key)

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(self._put_file, self._path(key), source)

    @staticmethod
    def _put_file(target: Path, source: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def get_file(self, key: str, target: Path) -> bool:
        path = self._path(key)
        if not path.is_file():
            return False
        await asyncio.to_thread(_link_or_copy, path, target)
        return True

    async def list_keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        root = Path(self.root)
        files = (path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("."))
        return sorted(str(path.relative_to(root)) for path in files)

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return str(self._path(key))

    async def close(self) -> None:
        return None


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link when both are on one filesystem, else a copy. An object is only ever replaced by a rename,
    never written in place, so a link keeps the bytes it was taken with, as a copy would, and costs nothing (a
    batch query stages whole dataset versions this way)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class S3ObjectStore:
    def __init__(self, root: str, *, region: str, endpoint_url: str | None) -> None:
        parsed = urlparse(root)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"TRACE_OBJECT_STORE must look like s3://bucket/prefix, got {root!r}")
        self.root = root.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        import aioboto3  # only S3 deployments pay for importing the AWS SDK (about 0.4 s)

        self._session = aioboto3.Session(region_name=region)
        self._endpoint_url = endpoint_url
        self._client: Any = None
        self._client_context: Any = None

    async def _s3(self) -> Any:
        if self._client is None:
            self._client_context = self._session.client("s3", endpoint_url=self._endpoint_url)
            self._client = await self._client_context.__aenter__()
        return self._client

    def _key(self, key: str) -> str:
        clean = _clean_key(key)
        return f"{self.prefix}/{clean}" if self.prefix else clean

    async def put_file(self, key: str, source: Path) -> None:
        s3 = await self._s3()
        await s3.upload_file(str(source), self.bucket, self._key(key))

    async def get_file(self, key: str, target: Path) -> bool:
        s3 = await self._s3()
        try:
            await s3.download_file(self.bucket, self._key(key), str(target))
        except Exception as error:  # botocore raises ClientError 404 (head) for a missing key
            if getattr(error, "response", {}).get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
                return False
            raise
        return True

    async def list_keys(self, prefix: str) -> list[str]:
        s3 = await self._s3()
        folder = self._key(prefix) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)

    async def delete(self, key: str) -> None:
        s3 = await self._s3()
        await s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    async def close(self) -> None:
        if self._client_context is not None:
            await self._client_context.__aexit__(None, None, None)
            self._client = self._client_context = None


def object_store_root(settings: Settings) -> str:
    """The configured root: `TRACE_OBJECT_STORE`, or `{TRACE_HOME}/objects` when unset."""
    return settings.object_store or str((settings.home / "objects").resolve())


def open_object_store(settings: Settings) -> ObjectStore:
    root = object_store_root(settings)
    if root.startswith("s3://"):
        return S3ObjectStore(root, region=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
    if "://" in root:
        raise ValueError(f"TRACE_OBJECT_STORE must be a local directory or s3://bucket/prefix, got {root!r}")
    return LocalObjectStore(Path(root))
