"""Images of a run: identity (sha256 of the prepared bytes), a shared cache of prepared bytes.

A fully cached re-run must learn that nothing is left to do without decoding a pixel: identities are
memoised by path, size and mtime (``ingest.memo``); bytes are prepared again only for calls to make.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cache.schema import response_key
from cache.store import Store
from ingest.images import ImageError, PreparedImage, PrepOptions, prepare_with_thumbnail
from ingest.manifest import ManifestRow
from ingest.memo import PrepMemo
from ingest.prepared import PreparedCache, cache_folder
from ingest.prompts import Prompt
from ingest.providers.base import DetectorItem


@dataclass
class ImageItem:
    """One manifest row and what preparing it gave."""

    row: ManifestRow
    path: str  # a plain string: pathlib costs seconds over 10,000 images on a cached run
    sha256: str | None = None
    mime: str = "image/png"
    width: int = 0
    height: int = 0
    error: ImageError | None = None


class ImageCache:
    """Prepared bytes: recently used ones in memory (several models share one preparation), every
    one on disk (``ingest.prepared``), so phase 4 reads what phase 1 prepared instead of preparing
    the image again."""

    def __init__(self, options: PrepOptions, store: Store, capacity: int = 256):
        self.options, self.store, self.capacity = options, store, capacity
        self._items: OrderedDict[str, PreparedImage] = OrderedDict()
        self._lock = threading.Lock()  # used from worker threads (asyncio.to_thread)
        self.disk = PreparedCache(cache_folder(store.local_dir))
        self.prepared = 0  # images decoded and encoded by this cache (each at most once, ideally)

    def put(self, prepared: PreparedImage) -> None:
        with self._lock:
            self._items[prepared.sha256] = prepared
            self._items.move_to_end(prepared.sha256)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def prepare(self, path: str) -> PreparedImage:
        prepared, thumb = prepare_with_thumbnail(Path(path), self.options, self.store.has_thumb)
        self.prepared += 1
        if thumb is not None:
            with contextlib.suppress(OSError):  # a thumbnail is for people; a full disk must not stop a run
                self.store.write_thumb(prepared.sha256, thumb)
        self.disk.put(prepared.sha256, prepared.mime, prepared.data)
        self.put(prepared)
        return prepared

    def get(self, item: ImageItem) -> PreparedImage:
        with self._lock:
            found = self._items.get(item.sha256 or "")
        if found is not None:
            return found
        if item.sha256:
            data = self.disk.get(item.sha256, item.mime)
            if data is not None:
                return PreparedImage(data, item.mime, item.sha256, item.width, item.height)
        prepared = self.prepare(item.path)
        if prepared.sha256 != item.sha256:  # the file changed under us since phase 1
            raise ImageError(item.path, "changed", f"{item.path}: file changed during the run")
        return prepared


def image_error_key(item: ImageItem, model: str, prompt: Prompt, repeat: int) -> str:
    """A stable key for an image that could not be prepared (no image sha exists)."""
    return response_key(
        provider="image_error", model=model, params={"path": item.row.image_path},
        prompt_text=prompt.text, image_sha256="", repeat=repeat,
    )


async def identify_images(
    rows: list[ManifestRow], manifest_dir: Path, images: ImageCache, progress: bool = True
) -> list[ImageItem]:
    """Identify each row's image by the sha256 of its prepared bytes, via the memo when possible."""
    memo = PrepMemo.load(images.store, images.options.as_params())
    base = str(manifest_dir)
    items = [ImageItem(row=r, path=os.path.join(base, r.image_path)) for r in rows]
    todo: list[ImageItem] = []
    for item in items:
        hit = memo.lookup(item.path)
        if hit:
            item.sha256, item.mime, item.width, item.height = hit
        else:
            todo.append(item)
    if todo:
        bar = progress_bar(len(todo), "preparing images", progress)
        gate = asyncio.Semaphore(2)

        async def one(item: ImageItem) -> None:
            async with gate:
                try:
                    prepared = await asyncio.to_thread(images.prepare, item.path)
                except ImageError as exc:
                    item.error = exc
                else:
                    item.sha256, item.mime = prepared.sha256, prepared.mime
                    item.width, item.height = prepared.width, prepared.height
                    memo.record(item.path, item.sha256, item.mime, item.width, item.height)
            bar.update(1)

        await asyncio.gather(*(one(i) for i in todo))
        bar.close()
        memo.save()
    return items


def detector_items(items: list[ImageItem], images: ImageCache) -> list[DetectorItem]:
    """Every identified image, as a local detector sees it in ``prepare`` (bytes loaded on demand)."""

    def loader(item: ImageItem):
        return lambda: images.get(item).data

    return [
        DetectorItem(image_sha256=i.sha256, modality=i.row.modality, truth=i.row.truth, load=loader(i))
        for i in items if i.sha256 is not None
    ]


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="call" if "call" in desc else "img",
                disable=not enabled, file=sys.stderr, dynamic_ncols=True)


