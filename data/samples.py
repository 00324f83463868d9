"""The public sample-image registry (``data/samples.csv``) and ``python -m data fetch-samples``.

Each registry row is one image: where it goes (``file``, relative to the samples folder), its
``modality``, ``truth``, ``source`` (a ``source_id`` names its folder in the demo), licence,
attribution, ``origin_url`` (a raw GitHub URL pinned to a commit) and the ``sha256`` of its bytes.

- Rows with ``derived=yes`` and an empty ``origin_url`` were cut from a figure or notebook output by
  the mirror's curator: no URL serves their bytes, so they can only come from a mirror (``--mirror``).
- Rows with a ``package`` ship inside an installed Python package (``package_file`` is
  ``module:resource``); ``fetch-samples`` skips them and the demo writes them (see ``data.demo``).

Fetching never trusts a byte it has not hashed: a file is written only when its sha256 matches the
registry (a mismatch is refused, named with both hashes, and makes the command exit 2), and a file
already present with the right hash is skipped, so an interrupted fetch resumes. Downloads use
urllib with a short timeout; the first network failure stops further downloads with one line, and
the fetch continues with what is available.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import importlib.resources
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from data import DATA_DIR

REGISTRY = DATA_DIR / "samples.csv"
DEFAULT_DEST = DATA_DIR / "samples"
DEFAULT_TIMEOUT_S = 5.0
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
COLUMNS = (
    "file", "modality", "truth", "source", "source_id", "license", "license_files", "attribution",
    "origin_url", "sha256", "derived", "package", "package_file",
)  # fmt: skip
MIRROR_DOCS = ("PROVENANCE.md",)  # copied beside the images with LICENSES/ when the mirror has them


class RegistryError(ValueError):
    """A malformed registry file (names the file, line and column)."""


@dataclass(frozen=True)
class Sample:
    """One registry row."""

    file: str  # path under the samples folder, forward slashes
    modality: str
    truth: str  # real | synthetic
    source: str  # dataset or generator, as its authors name it
    source_id: str  # short folder name for the demo layout (becomes the manifest's source)
    license: str
    license_files: tuple[str, ...]  # licence texts under LICENSES/ in the mirror
    attribution: str
    origin_url: str  # raw URL pinned to a commit; empty for derived and packaged files
    sha256: str  # of the file's bytes (packaged rows: of the packaged resource)
    derived: bool
    package: str = ""  # distribution that ships the image, e.g. scikit-image
    package_file: str = ""  # module:resource inside that package

    @property
    def packaged(self) -> bool:
        return bool(self.package)

    @property
    def demo_path(self) -> str:
        """Where the demo puts it: <modality>/<truth>/<source_id>/<file name>."""
        return f"{self.modality}/{self.truth}/{self.source_id}/{Path(self.file).name}"

    def package_bytes(self) -> bytes:
        """The packaged resource's bytes (FileNotFoundError / ModuleNotFoundError when missing)."""
        module, _, resource = self.package_file.partition(":")
        return (importlib.resources.files(module) / resource).read_bytes()


def load_registry(path: Path = REGISTRY) -> list[Sample]:
    """Read and check the registry; the first problem raises RegistryError naming line and column."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise RegistryError(f"{path}, line 1: missing column(s) {', '.join(missing)}")
        samples, seen = [], set()
        for line, row in enumerate(reader, start=2):
            sample = _sample(path, line, row)
            if sample.file in seen:
                raise RegistryError(f"{path}, line {line}: file {sample.file!r} is listed twice")
            seen.add(sample.file)
            samples.append(sample)
    return samples


def _sample(path: Path, line: int, row: dict[str, str]) -> Sample:
    values = {c: (row.get(c) or "").strip() for c in COLUMNS}
    for column in ("file", "modality", "truth", "source_id", "sha256"):
        if not values[column]:
            raise RegistryError(f"{path}, line {line}, column '{column}': empty")
    if values["truth"] not in ("real", "synthetic"):
        raise RegistryError(f"{path}, line {line}, column 'truth': {values['truth']!r}; use real or synthetic")
    if len(values["sha256"]) != 64 or any(ch not in "0123456789abcdef" for ch in values["sha256"]):
        raise RegistryError(f"{path}, line {line}, column 'sha256': not a lowercase hex sha256")
    if Path(values["file"]).is_absolute() or ".." in Path(values["file"]).parts:
        raise RegistryError(f"{path}, line {line}, column 'file': must be a relative path inside the folder")
    files = tuple(f for f in values.pop("license_files").split(";") if f)
    derived = values.pop("derived").lower() in ("yes", "true", "1")
    return Sample(**values, license_files=files, derived=derived)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write under a hidden temporary name, then rename: the file is absent or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class FetchReport:
    """What a fetch did. ``problems`` (hash mismatches) make the CLI exit 2."""

    present: list[str] = field(default_factory=list)  # already there with the right hash
    copied: list[str] = field(default_factory=list)  # from the mirror
    downloaded: list[str] = field(default_factory=list)  # from origin_url
    replaced: list[str] = field(default_factory=list)  # a wrong-hash file overwritten by a good copy
    problems: list[str] = field(default_factory=list)  # refused files: name and both hashes
    unavailable: dict[str, str] = field(default_factory=dict)  # file -> why it is not here
    network_error: str | None = None
    packaged: list[str] = field(default_factory=list)  # rows shipped in packages (not fetched)

    @property
    def available(self) -> list[str]:
        return self.present + self.copied + self.downloaded


class Downloader:
    """urllib GETs with a short timeout; after the first network failure it stops trying."""

    def __init__(self, enabled: bool, timeout: float = DEFAULT_TIMEOUT_S):
        self.enabled, self.timeout = enabled, timeout
        self.failure: str | None = None  # the network error that stopped downloads

    def get(self, url: str) -> tuple[bytes | None, str]:
        """(bytes, "") or (None, why not)."""
        if not self.enabled:
            return None, "offline"
        if self.failure:
            return None, f"network unavailable ({self.failure})"
        if not url.startswith(("https://", "http://")):
            return None, f"not an http(s) URL: {url}"
        request = urllib.request.Request(url, headers={"User-Agent": "MedLens-fetch-samples"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read(MAX_DOWNLOAD_BYTES + 1)
        except urllib.error.HTTPError as exc:  # the server answered: this file only
            return None, f"HTTP {exc.code} from {url}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # DNS, refused, timeout, reset
            reason = getattr(exc, "reason", exc)
            self.failure = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
            return None, f"network unavailable ({self.failure})"
        if len(data) > MAX_DOWNLOAD_BYTES:
            return None, f"larger than {MAX_DOWNLOAD_BYTES} bytes: {url}"
        return data, ""


def fetch_samples(
    samples: Iterable[Sample],
    dest: Path,
    *,
    mirror: Path | None = None,
    downloader: Downloader | None = None,
    progress: bool = False,
) -> FetchReport:
    """Bring every non-packaged sample into ``dest`` (mirror first, then its URL), hash-checked."""
    from tqdm import tqdm

    dest, report = Path(dest), FetchReport()
    downloader = downloader or Downloader(enabled=True)
    samples = list(samples)
    bar = tqdm(samples, desc="samples", unit="file", disable=not progress, leave=False)
    for sample in bar:
        if sample.packaged:
            report.packaged.append(sample.file)
        else:
            _fetch_one(sample, dest, mirror, downloader, report)
    bar.close()
    report.network_error = downloader.failure
    if mirror is not None:
        copy_licenses(mirror, dest)
    present = set(report.available)
    write_attribution([s for s in samples if s.file in present], dest / "ATTRIBUTION.md",
                      missing=len(samples) - len(report.packaged) - len(present))
    return report


def _fetch_one(sample: Sample, dest: Path, mirror: Path | None, downloader: Downloader,
               report: FetchReport) -> None:
    target = dest / sample.file
    stale = sha256_file(target) if target.is_file() else None
    if stale == sample.sha256:
        report.present.append(sample.file)
        return
    data, origin, why = None, "", ""
    if mirror is not None and (mirror / sample.file).is_file():
        data, origin = (mirror / sample.file).read_bytes(), f"the mirror copy {mirror / sample.file}"
    elif sample.origin_url:
        data, why = downloader.get(sample.origin_url)
        origin = sample.origin_url
    else:
        why = "derived file with no download URL: only a mirror has it (--mirror DIR)"
    if data is None:
        if stale is not None:
            report.problems.append(
                f"{target}: sha256 {stale} does not match the registry's {sample.sha256}, and it cannot "
                f"be replaced ({why}); delete it or restore the original")
        else:
            report.unavailable[sample.file] = why
        return
    got = hashlib.sha256(data).hexdigest()
    if got != sample.sha256:
        fix = ("the mirror copy is damaged or was altered: restore it" if origin.startswith("the mirror")
               else "the server sent other bytes than the registry pins: do not use them")
        report.problems.append(
            f"{sample.file}: sha256 mismatch in {origin}: expected {sample.sha256}, got {got}; refused "
            f"(not written); {fix}")
        return
    atomic_write(target, data)
    if stale is not None:
        report.replaced.append(f"{sample.file} (its sha256 was {stale})")
    (report.copied if origin.startswith("the mirror") else report.downloaded).append(sample.file)


def copy_licenses(source: Path, dest: Path) -> int:
    """Copy LICENSES/* and PROVENANCE.md from ``source`` (a mirror) into ``dest``; returns files copied."""
    copied = 0
    licenses = Path(source) / "LICENSES"
    files = sorted(licenses.glob("*")) if licenses.is_dir() else []
    targets = [(f, Path(dest) / "LICENSES" / f.name) for f in files if f.is_file()]
    targets += [(Path(source) / n, Path(dest) / n) for n in MIRROR_DOCS if (Path(source) / n).is_file()]
    for src, target in targets:
        data = src.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            atomic_write(target, data)
            copied += 1
    return copied


def write_attribution(samples: list[Sample], path: Path, *, missing: int = 0,
                      where: Callable[[Sample], str] = lambda s: s.file) -> None:
    """ATTRIBUTION.md for ``samples`` (the files present), grouped by source, generated from the registry."""
    lines = [
        "# Attribution of the sample images", "",
        "Generated by MedLens from `data/samples.csv`; regenerate it rather than edit it. Every file is",
        "listed with its source, licence, attribution and origin. Licence texts are in `LICENSES/` when",
        "they were copied from the sample mirror; otherwise follow the origin URLs (pinned to a commit).",
        "",
    ]
    if missing:
        lines += [f"{missing} registry file(s) are not present here (see `data/samples.csv`).", ""]
    groups: dict[tuple[str, str, str, str], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.source_id, sample.source, sample.license, sample.attribution), []).append(sample)
    for (source_id, source, license_, attribution), members in sorted(groups.items()):
        texts = sorted({f for s in members for f in s.license_files})
        lines += [f"## {source_id}: {source}", "", f"- Licence: {license_}"
                  + (f" (texts: {', '.join(f'`{t}`' for t in texts)})" if texts else ""),
                  f"- Attribution: {attribution}", f"- Files ({len(members)}):"]
        lines += [f"  - `{where(s)}`: {_origin(s)}; sha256 `{s.sha256}`" for s in members]
        lines.append("")
    atomic_write(Path(path), "\n".join(lines).encode("utf-8"))


def _origin(sample: Sample) -> str:
    if sample.packaged:
        return f"ships in the {sample.package} package ({sample.package_file})"
    if sample.origin_url:
        return sample.origin_url
    return "derived by the mirror's curator (no download URL: only a mirror has it)"


def summary_lines(report: FetchReport, dest: Path) -> list[str]:
    """What a fetch did, a line per fact, for people."""
    total = len(report.available) + len(report.unavailable) + len(report.problems)
    lines = [f"samples in {dest}: {len(report.available)} of {total} available ({len(report.present)} "
             f"already present, {len(report.copied)} copied from the mirror, {len(report.downloaded)} downloaded)"]
    if report.replaced:
        lines.append(f"replaced {len(report.replaced)} file(s) whose sha256 was wrong: {', '.join(report.replaced)}")
    reasons = list(report.unavailable.values())
    if report.network_error:
        skipped = sum(r.startswith("network unavailable") for r in reasons)
        lines.append(f"network unavailable ({report.network_error}): {skipped} sample(s) not downloaded; "
                     f"continuing with the {len(report.available)} available")
    offline = sum(r == "offline" for r in reasons)
    if offline:
        lines.append(f"offline: {offline} sample(s) not downloaded")
    derived = sum(r.startswith("derived") for r in reasons)
    if derived:
        lines.append(f"{derived} derived file(s) have no download URL: they can only come from a mirror "
                     "(--mirror DIR)")
    others = [f"{f}: {r}" for f, r in report.unavailable.items()
              if not r.startswith(("network unavailable", "offline", "derived"))]
    lines += [f"unavailable: {line}" for line in others]
    if report.packaged:
        lines.append(f"{len(report.packaged)} image(s) ship in installed packages (scikit-image, pydicom-data); "
                     "the demo writes them")
    return lines
