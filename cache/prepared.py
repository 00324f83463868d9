"""Prepared images kept in the store: the exact bytes each model got, named by their sha256.

``image_sha256`` in every response row is the sha256 of the prepared bytes sent to the model (decoded,
converted, resized and re-encoded without metadata by ``ingest.images.prepare_image``). ``ingest run``
keeps those bytes (so an image is prepared once, and a reader study shows exactly what the models
saw)::

    <store>/prepared/<first two hex digits>/<image_sha256>.png | .jpg

or under ``$MEDLENS_PREP_CACHE`` (a folder the user owns, shared by several stores). For a store on
S3 the folder is local too (``Store.local_dir``: ``~/.cache/medlens/s3/<bucket>/<prefix>/prepared``):
it is a cache of bytes this machine prepared, bounded and pruned by last use, which an object store
cannot track, and phase 4 reads it back right after phase 1 wrote it. A reader study on an S3 store
shows the images prepared on the machine that serves it. ``ingest``
bounds the folder (``ingest.prepared.PreparedCache``, least recently used first); this module only
names, writes and reads its files. A file is used only when its bytes hash to its name: the same
bytes the models got, or nothing (the thumbnails in ``thumbs/`` are small re-encodings and never
stand in for them). ``cache`` cannot prepare an image itself (that is ``ingest``'s job):
:func:`export_prepared` takes the preparation as a function, so ``ingest`` (or a test) can fill the
folder for images answered before it existed, keeping only images whose preparation gives the
stored sha256 again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from cache.store import Store, atomic_write_bytes

FOLDER = "prepared"
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg"}
SHA256 = re.compile(r"[0-9a-f]{64}")


def prepared_folder(store_root: str | os.PathLike[str]) -> Path:
    """``$MEDLENS_PREP_CACHE``, else ``<store>/prepared``."""
    env = os.environ.get("MEDLENS_PREP_CACHE")
    return Path(env) if env else Path(store_root) / FOLDER


def prepared_path(folder: Path, image_sha256: str, mime: str) -> Path:
    """Where the prepared image ``image_sha256`` of type ``mime`` lives in ``folder``."""
    if not SHA256.fullmatch(str(image_sha256)):
        raise ValueError(f"not a sha256: {image_sha256!r}")
    if mime not in EXTENSIONS:
        raise ValueError(f"prepared images are {' or '.join(EXTENSIONS)}, not {mime!r}")
    return folder / image_sha256[:2] / f"{image_sha256}{EXTENSIONS[mime]}"


def write_prepared(store: Store, data: bytes, mime: str) -> Path:
    """Keep prepared image bytes under their sha256 (atomically; an existing file is left alone)."""
    path = prepared_path(prepared_folder(store.local_dir), hashlib.sha256(data).hexdigest(), mime)
    if not path.exists():
        atomic_write_bytes(path, data, durable=False)
    return path


def read_prepared(store: Store, image_sha256: str) -> tuple[bytes, str] | None:
    """(bytes, mime) of the prepared image ``image_sha256``, only if its bytes hash to that name."""
    if not SHA256.fullmatch(str(image_sha256)):
        return None
    for mime in EXTENSIONS:
        try:
            data = prepared_path(prepared_folder(store.local_dir), image_sha256, mime).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == image_sha256:
            return data, mime
    return None


def prepared_shas(store: Store) -> set[str]:
    """The sha256s with a prepared image file (by name; :func:`read_prepared` checks the bytes)."""
    folder = prepared_folder(store.local_dir)
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("??/*") if p.suffix in EXTENSIONS.values() and SHA256.fullmatch(p.stem)}


def export_prepared(
    store: Store, images: Iterable[tuple[str, Path]], prepare: Callable[[Path], tuple[bytes, str]]
) -> dict[str, int]:
    """For each (image_sha256, file) prepare the file again with ``prepare`` (-> bytes, mime) and keep
    the bytes when they hash to ``image_sha256``. Returns counts: kept, present, mismatch, unreadable."""
    counts = {"kept": 0, "present": 0, "mismatch": 0, "unreadable": 0}
    have = prepared_shas(store)
    for sha, path in images:
        if sha in have:
            counts["present"] += 1
            continue
        try:
            data, mime = prepare(Path(path))
        except Exception:  # moved, deleted or undecodable since the run (each preparer has its own errors)
            counts["unreadable"] += 1
            continue
        if hashlib.sha256(data).hexdigest() != sha:  # other preparation options, or the file changed
            counts["mismatch"] += 1
            continue
        write_prepared(store, data, mime)
        have.add(sha)
        counts["kept"] += 1
    return counts
