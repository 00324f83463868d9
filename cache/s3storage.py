"""A store on S3-compatible object storage (AWS S3, MinIO, Ceph RGW, R2...): ``cache.storage.Storage``.

- ``put_if_absent``: ``PutObject`` with ``If-None-Match: *`` through boto3 (pyarrow has no conditional
  put); 412 Precondition Failed means another writer created the name first. The first conditional put
  of a process checks that the service honours the header (a service that ignores it would let two
  runs claim one key): a probe object is put twice, the second must be refused.
- ``put``: ``PutObject`` of the whole body (a part is serialised first). One PUT is atomic: the object
  appears complete or not at all. Not ``S3FileSystem.open_output_stream``: its stream completes the
  upload when closed by an exception, so a writer failing half-way leaves a truncated object behind
  (measured with pyarrow 26 on moto: an exception after 20 MB left a 20 MB object).
- ``read`` / ``read_capped``: ``GetObject`` (NoSuchKey: FileNotFoundError); ``open_input``: a seekable
  ``S3FileSystem.open_input_file`` (ranged GETs: a Parquet footer without the whole part).
- ``list``: ``ListObjectsV2`` by prefix (with ``/`` as delimiter unless recursive); ``entries`` adds
  sizes and modification times from the same listing.
- The journal log is one object per fsynced group, ``<name>/<seq>``, created if absent and read back
  in sequence order; a log rewritten whole (``put`` of its name) is read instead of its groups.
- ``local_path`` is None: readers scan the parts as an Arrow dataset (``arrow_files``).

The endpoint is ``$AWS_ENDPOINT_URL_S3`` or ``$AWS_ENDPOINT_URL`` (unset: AWS itself); credentials come
from the standard AWS chain (environment, ``AWS_PROFILE``, ``~/.aws``), are never printed or stored,
and a secret read from a file is registered with the scrubber (``cache.redact.register_secret``).
Every service error becomes an :class:`S3StoreError` (an ``OSError``: the store's callers already turn
those into one line) that names the object and the fix.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import uuid
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from cache.location import S3Location
from cache.storage import Data, Entry, check_name

_CLIENTS: dict[tuple[str, ...], tuple[Any, Any]] = {}  # endpoint + credentials -> (boto3 client, pyarrow fs)
_LOCK = threading.Lock()
_PROBED: set[tuple[str, ...]] = set()  # (endpoint, bucket) whose conditional puts were checked


class S3StoreError(OSError):
    """An object-store request failed; the message names the store object and what to do."""


def endpoint_url() -> str | None:
    """The S3 endpoint from the standard variables (None: AWS); raises S3StoreError if malformed."""
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise S3StoreError(
            "AWS_ENDPOINT_URL must be http(s)://host[:port] without credentials (got a value that is not); "
            "put credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile"
        )
    return url


def _clients() -> tuple[Any, Any]:
    """(boto3 client, pyarrow S3FileSystem) for the current endpoint and credentials, made once."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url()
    env = tuple(os.environ.get(n, "") for n in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_DEFAULT_REGION"))
    secret = hashlib.sha256(os.environ.get("AWS_SECRET_ACCESS_KEY", "").encode()).hexdigest()
    cache_key = (endpoint or "", *env, secret)
    with _LOCK:  # boto3 sessions are not thread-safe to create; clients are safe to share
        if cache_key in _CLIENTS:
            return _CLIENTS[cache_key]
        session = boto3.session.Session()
        region = session.region_name or "us-east-1"
        config = Config(
            retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60,
            max_pool_connections=32, s3={"addressing_style": "path"} if endpoint else None,
        )  # fmt: skip
        client = session.client("s3", endpoint_url=endpoint, region_name=region, config=config)
        _CLIENTS[cache_key] = (client, _filesystem(session, endpoint, region))
        return _CLIENTS[cache_key]


def _filesystem(session: Any, endpoint: str | None, region: str) -> Any:
    from pyarrow import fs

    from cache.redact import register_secret

    kwargs: dict[str, Any] = {}
    if endpoint:
        parts = urlsplit(endpoint)
        kwargs |= {"endpoint_override": parts.netloc, "scheme": parts.scheme}
    creds = session.get_credentials()
    if creds is not None and getattr(creds, "method", "") in (
        "env",
        "shared-credentials-file",
        "config-file",
    ):
        frozen = creds.get_frozen_credentials()  # static: both clients sign with the same key
        register_secret(frozen.secret_key)
        register_secret(frozen.token or "")
        kwargs |= {"access_key": frozen.access_key, "secret_key": frozen.secret_key,
                   "session_token": frozen.token}  # fmt: skip
    return fs.S3FileSystem(
        region=region, connect_timeout=10, request_timeout=60,
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=5), **kwargs,
    )  # fmt: skip


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(
        response.get("Error", {}).get("Code")
        or response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


class S3Storage:
    """A store under ``s3://bucket/prefix`` (see the module docstring)."""

    def __init__(self, location: S3Location, client: Any = None, filesystem: Any = None):
        self.location = location
        if client is None or filesystem is None:
            client, filesystem = _clients()
        self.client, self.filesystem = client, filesystem
        self.endpoint = endpoint_url() or "AWS S3"

    # -- names and errors -------------------------------------------------------------------
    def key(self, name: str) -> str:
        return self.location.key(check_name(name))

    def arrow_path(self, name: str) -> str:
        """``bucket/key``: how pyarrow's S3FileSystem names the object."""
        return f"{self.location.bucket}/{self.key(name)}"

    def arrow_files(self, names: list[str]) -> tuple[Any, list[str]]:
        """(pyarrow filesystem, paths) for scanning ``names`` as an Arrow dataset."""
        return self.filesystem, [self.arrow_path(n) for n in names]

    def local_path(self, name: str) -> None:
        return None

    def _error(self, exc: BaseException, what: str, name: str = "") -> OSError:
        """One S3StoreError (or FileNotFoundError) naming the object and the fix."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = f"{self.location.url}/{name}" if name else self.location.url
        code = _code(exc)
        if code in ("NoSuchKey", "404", "NotFound"):
            return FileNotFoundError(2, "no such object", where)
        if code == "NoSuchBucket":
            fix = f"create the bucket {self.location.bucket!r} at {self.endpoint}, or fix --store / MEDLENS_STORE"
        elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken"):
            fix = "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and their rights"
        elif isinstance(exc, NoCredentialsError):
            fix = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        elif isinstance(exc, EndpointConnectionError):
            fix = f"is the object store at {self.endpoint} running? (AWS_ENDPOINT_URL)"
        elif isinstance(exc, ClientError):
            fix = "see the object store's message"
        else:
            fix = f"is the object store at {self.endpoint} reachable?"
        message = " ".join(str(exc).split())[:300]
        return S3StoreError(f"{what} {where} failed ({message}); {fix}")

    def _call(self, what: str, name: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.location.bucket, **kwargs)
        except Exception as exc:  # botocore's errors are not OSError: callers handle OSError
            raise self._error(exc, what, name) from None

    # -- writing ------------------------------------------------------------------------------
    def put_if_absent(self, name: str, data: Data, durable: bool = True, mode: int = 0o644) -> bool:
        """Create ``name`` unless it exists (``If-None-Match: *``); True when this call created it.
        ``durable`` and ``mode`` do not apply: an object is durable once PutObject returns."""
        self._check_conditional_puts()
        return self._put_new(name, _body(data))

    def _put_new(self, name: str, body: bytes) -> bool:
        from botocore.exceptions import ClientError

        for attempt in range(5):
            try:
                self.client.put_object(
                    Bucket=self.location.bucket, Key=self.key(name), Body=body, IfNoneMatch="*"
                )
                return True
            except ClientError as exc:
                code = _code(exc)
                if code in ("PreconditionFailed", "412"):
                    return False
                if code in ("ConditionalRequestConflict", "409") and attempt < 4:
                    time.sleep(0.05 * (attempt + 1))  # a concurrent conditional put on the name: ask again
                    continue
                raise self._error(exc, "creating", name) from None
            except Exception as exc:
                raise self._error(exc, "creating", name) from None
        return False

    def _check_conditional_puts(self) -> None:
        """Refuse a service that ignores If-None-Match (checked once per endpoint and bucket)."""
        probe_key = (self.endpoint, self.location.bucket)
        if probe_key in _PROBED:
            return
        name = f".medlens-probe/{uuid.uuid4().hex}"
        try:
            first, second = self._put_new(name, b"1"), self._put_new(name, b"2")
        finally:
            self.delete(name)
        if not (first and not second):
            raise S3StoreError(
                f"the object store at {self.endpoint} ignores conditional writes (If-None-Match: *) in "
                f"bucket {self.location.bucket!r}, so two runs could pay for one key; MedLens cannot keep a "
                "shared store there (use AWS S3, MinIO, or a service that honours conditional PutObject)"
            )
        _PROBED.add(probe_key)

    def put(self, name: str, data: Data, durable: bool = True, mode: int = 0o644) -> None:
        """Write ``name`` (replacing it) in one PutObject: complete or absent."""
        self._call("writing", name, "put_object", Key=self.key(name), Body=_body(data))

    # -- reading ------------------------------------------------------------------------------
    def read(self, name: str) -> bytes:
        return self._call("reading", name, "get_object", Key=self.key(name))["Body"].read()

    def read_capped(self, name: str, max_bytes: int) -> bytes:
        """The object's bytes if it is at most ``max_bytes`` (checked before reading its body)."""
        response = self._call("reading", name, "get_object", Key=self.key(name))
        if response.get("ContentLength", 0) > max_bytes:
            response["Body"].close()
            raise S3StoreError(f"{self.location.url}/{name}: more than the limit of {max_bytes:,} bytes")
        return response["Body"].read()

    def exists(self, name: str) -> bool:
        try:
            self._call("checking", name, "head_object", Key=self.key(name))
        except FileNotFoundError:
            return False
        return True

    def open_input(self, name: str) -> BinaryIO:
        """A seekable reader (ranged GETs)."""
        return self.filesystem.open_input_file(self.arrow_path(name))

    def delete(self, name: str) -> None:
        """Delete the object (a missing one, or a 'folder', is fine: object stores have none)."""
        self._call("deleting", name, "delete_object", Key=self.key(name))

    def delete_log(self, name: str) -> None:
        """Delete a journal log: its groups, and a whole rewrite of it if any."""
        keys = [self.key(n) for n in self.list(name, recursive=True)] + [self.key(name)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call("deleting", name, "delete_objects", Delete={"Objects": batch, "Quiet": True})

    def _pages(self, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        base = self.location.key(check_name(prefix)) + "/" if prefix else self.location.key("")
        kwargs = {"Prefix": base} | ({} if recursive else {"Delimiter": "/"})
        try:
            return list(
                self.client.get_paginator("list_objects_v2").paginate(Bucket=self.location.bucket, **kwargs)
            )
        except Exception as exc:
            raise self._error(exc, "listing", prefix) from None

    def _relative(self, key: str) -> str | None:
        start = len(self.location.prefix) + 1 if self.location.prefix else 0
        name = key[start:].rstrip("/")
        return None if not name or any(p.startswith(".") for p in name.split("/")) else name

    def list(self, prefix: str, recursive: bool = False) -> list[str]:
        """Names under ``prefix`` (hidden ones left out), sorted; without ``recursive``, the objects
        and 'folders' directly in it."""
        found: set[str] = set()
        for page in self._pages(prefix, recursive):
            keys = [o["Key"] for o in page.get("Contents", [])] + [
                p["Prefix"] for p in page.get("CommonPrefixes", [])
            ]
            found.update(n for n in map(self._relative, keys) if n)
        return sorted(found)

    def entries(self, prefix: str) -> list[Entry]:
        """Every object below ``prefix`` with its size and modification time (one listing)."""
        out = []
        for page in self._pages(prefix, recursive=True):
            for obj in page.get("Contents", []):
                name = self._relative(obj["Key"])
                if name:
                    out.append(Entry(name, int(obj["Size"]), int(obj["LastModified"].timestamp() * 1e9)))
        return sorted(out)

    # -- the journal log ------------------------------------------------------------------------
    def open_log(self, name: str, reserve: int = 0) -> S3Log:
        return S3Log(self, name)

    def read_log(self, name: str) -> bytes:
        try:
            return self.read(name)  # rewritten whole (cache.writer after a failed group)
        except FileNotFoundError:
            pass
        return b"".join(self.read(group) for group in self.list(name, recursive=True))


class S3Log:
    """The journal's log on S3: ``append`` buffers, ``sync`` creates the next group object."""

    def __init__(self, storage: S3Storage, name: str):
        self.storage, self.name = storage, check_name(name)
        self.seq = 1
        self._buffer = io.BytesIO()

    def append(self, data: bytes) -> None:
        self._buffer.write(data)

    def sync(self) -> None:
        body = self._buffer.getvalue()
        if not body:
            return
        for _ in range(10):
            if self.storage.put_if_absent(f"{self.name}/{self.seq:08d}", body):
                break
            groups = [g.rsplit("/", 1)[-1] for g in self.storage.list(self.name, recursive=True)]
            self.seq = (
                max([self.seq, *(int(g) for g in groups if g.isdigit())]) + 1
            )  # reopened: after the last
        else:
            raise S3StoreError(f"{self.storage.location.url}/{self.name}: no free journal group name")
        self.seq += 1
        self._buffer = io.BytesIO()

    def close(self, trim: bool = True) -> None:
        self.sync()


def _body(data: Data) -> bytes:
    if not callable(data):
        return bytes(data)
    buffer = io.BytesIO()
    data(buffer)
    return buffer.getvalue()
