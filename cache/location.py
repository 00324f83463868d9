"""Where a store lives: a local folder, or ``s3://bucket/prefix`` on S3-compatible object storage.

One parser for every command that takes a store (``--store``, ``$MEDLENS_STORE``, the dashboard):
:func:`parse_location` returns a ``Path`` or an :class:`S3Location`, or raises
:class:`StoreLocationError` naming what is wrong and how to write it instead. The endpoint and the
credentials of an S3 store are never part of its location: they come from the standard AWS
environment (``AWS_ENDPOINT_URL`` for MinIO, Ceph, R2...; ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and ``~/.aws/config``), so a location can be printed,
logged and stored in a run record.

Validation follows the S3 naming rules, kept strict so that a typo fails here, once, instead of as an
access error later: a bucket is 3-63 characters of lowercase letters, digits, ``.`` and ``-``,
starting and ending with a letter or digit, no ``..``, not an IP address; a prefix is ``/``-separated
segments of S3's "safe characters" (letters, digits, ``! - _ . ( ) =``), none empty, ``.`` or ``..``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SCHEME = "s3://"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_SEGMENT = re.compile(r"[A-Za-z0-9!_.()=-]{1,255}")
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")
MAX_PREFIX = 512  # S3 keys are at most 1,024 bytes: leave room for the store's own names


class StoreLocationError(ValueError):
    """A ``--store`` / ``MEDLENS_STORE`` value that is not a store location; the message says the fix."""


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix``: the store's objects are ``<prefix>/<name>`` in ``bucket``."""

    bucket: str
    prefix: str = ""  # no leading or trailing '/'; "" is the bucket's top level

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def __str__(self) -> str:
        return self.url

    def key(self, name: str) -> str:
        """The object key of the store-relative ``name``."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def local_cache(self) -> Path:
        """This machine's folder for what an S3 store keeps locally (the preparation memo and the
        prepared images): ``$MEDLENS_S3_CACHE``, else ``~/.cache/medlens/s3/<bucket>/<prefix>``."""
        base = os.environ.get("MEDLENS_S3_CACHE")
        if not base:
            home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
            base = Path(home) / "medlens" / "s3"
        return Path(base, self.bucket, *self.prefix.split("/")) if self.prefix else Path(base, self.bucket)


StoreLocation = Path | S3Location


def is_s3(text: object) -> bool:
    """Whether ``text`` names an S3 store (``s3://``, any case), without validating it."""
    return isinstance(text, S3Location) or str(text)[:5].lower() == SCHEME


def parse_location(text: str | os.PathLike[str] | S3Location) -> StoreLocation:
    """A local store folder (``Path``) or an :class:`S3Location`; raises StoreLocationError."""
    if isinstance(text, S3Location):
        return text
    if isinstance(text, Path):
        if str(text)[:4].lower() == "s3:/":  # Path("s3://b/p") collapsed the '//': not a folder
            raise StoreLocationError(
                f"{text}: an s3:// location was turned into a local path; pass it as given, s3://bucket/prefix"
            )
        return text
    raw = os.fspath(text)
    if not raw.strip():
        raise StoreLocationError(
            "the store location is empty; pass --store DIR or --store s3://bucket/prefix"
        )
    if is_s3(raw):
        return parse_s3(raw)
    scheme = _URL_SCHEME.match(raw)
    if scheme and len(scheme.group(1)) > 1:  # 'C:/...' is a Windows drive, not a scheme
        name = scheme.group(1).lower()
        hint = " (did you mean s3://...?)" if name == "s3" else ""
        raise StoreLocationError(
            f"{raw}: {name!r} is not a store location{hint}; a store is a local folder or "
            "s3://bucket/prefix (for MinIO, Ceph, R2 and other S3-compatible services set "
            "AWS_ENDPOINT_URL and use s3://)"
        )
    return Path(raw)


def parse_s3(raw: str) -> S3Location:
    """Parse and validate ``s3://bucket[/prefix]``; raises StoreLocationError naming the fix."""
    rest = raw[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:  # not echoed: it may hold a key or a password
        raise StoreLocationError(
            f"s3://{bucket.rsplit('@', 1)[-1]}/...: credentials and endpoints do not go into the store "
            "location; write s3://bucket/prefix and set AWS_ENDPOINT_URL and the AWS credential "
            "variables (or AWS_PROFILE)"
        )
    if any(c in rest for c in "?#\\") or any(ord(c) < 32 or ord(c) == 127 for c in rest):
        shown = "".join(c for c in rest.split("?", 1)[0].split("#", 1)[0] if c.isprintable())
        raise StoreLocationError(
            f"s3://{shown}...: an S3 store location has no query, fragment, backslash or control "
            "character; write it as s3://bucket/prefix"
        )
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IP.fullmatch(bucket):
        raise StoreLocationError(
            f"{raw}: {bucket!r} is not a valid bucket name (3-63 characters: lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit, no '..', not an IP address); "
            "fix the bucket in --store or MEDLENS_STORE"
        )
    prefix = prefix.rstrip("/")
    if prefix:
        for segment in prefix.split("/"):
            if segment in ("", ".", ".."):
                raise StoreLocationError(
                    f"{raw}: the prefix {prefix!r} has an empty, '.' or '..' segment; give it as plain "
                    "folder names, e.g. s3://bucket/team/study1"
                )
            if not _SEGMENT.fullmatch(segment):
                raise StoreLocationError(
                    f"{raw}: prefix segment {segment!r} uses characters outside letters, digits and "
                    "! - _ . ( ) = ; rename it, e.g. s3://bucket/team/study1"
                )
        if len(prefix.encode()) > MAX_PREFIX:
            raise StoreLocationError(
                f"{raw}: the prefix is longer than {MAX_PREFIX} bytes; use a shorter one"
            )
    return S3Location(bucket, prefix)
