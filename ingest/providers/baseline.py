"""``baseline:forensic``: a local, honest reference detector on image statistics.

Twelve measured statistics per prepared image feed a standardised logistic regression. Each image is
scored out-of-fold within its modality (StratifiedGroupKFold, groups = sha256, so identical copies
share a fold): the model that judges an image never saw it, nor a byte-identical copy, in training.
Features are computed on the prepared bytes (the same pixels a cloud model receives), which removes
the file-format confound; the prepared image may still carry resampling cues (a source that was
enlarged or shrunk before preparation keeps that trace), and a cue the detector finds may be such a
confound rather than a trace of generation. Fully offline and deterministic.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ingest.providers.base import (
    CallRequest,
    DetectorItem,
    LocalDetector,
    ModelSpec,
    ProviderError,
    Reply,
    SpecError,
)
from ingest.providers.registry import Capabilities, PriceRule, provider

TRUTHS = ("real", "synthetic")
MIN_PER_CLASS = 4  # fewer real or synthetic images than this: no honest out-of-fold model
MAX_FOLDS = 5
SEED = 0
CROP = 256  # native-resolution centre crop for spectral / noise cues (no resampling of the pixels)
THUMB = 256  # longest side of the box-reduced copy used for colour statistics

# (column, human name, why it may separate real from synthetic)
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("spectral_slope", "power-spectrum slope", "natural images fall off near 1/f^2; generators deviate"),
    ("hf_energy_ratio", "high-frequency energy ratio", "power above 0.25 cycles/px; upsampling lacks it"),
    ("spectral_peak", "residual spectral peak", "log10 max/median of residual spectrum; upsampling peaks"),
    ("residual_std", "noise-residual std", "sensor noise vs. denoised generator output"),
    ("residual_kurtosis", "noise-residual kurtosis", "heavy tails of the residual (edges, compression)"),
    ("residual_corr", "noise-residual lag-1 correlation", "sensor noise is white; generator residue not"),
    ("pixel_corr", "pixel lag-1 correlation", "smoothness of the image itself"),
    ("blockiness", "8x8 JPEG blockiness", "jump across 8-px grid lines / jump elsewhere; JPEG history"),
    ("saturation_mean", "mean colour saturation", "colour rendering of the camera or generator"),
    ("saturation_std", "colour saturation spread", "colour variability"),
    ("hist_entropy", "intensity histogram entropy (bits)", "tonal richness of the grey levels"),
    ("clipped_fraction", "clipped-pixel fraction", "share of pixels at 0 or 255 (background, saturation)"),
)
FEATURE_NAMES = tuple(name for name, _, _ in FEATURES)
# Correlated cues can push against their own class medians; say what an arrow means.
ARROWS = "Arrows: each cue's push in this fold's model, given the other cues."


#: One manifest item as the runner hands it to ``prepare`` (the local-detector interface's item).
BaselineItem = DetectorItem


@dataclass(frozen=True)
class Verdict:
    """The detector's answer for one image."""

    label: str  # real | synthetic | uncertain
    confidence: float | None  # probability of the chosen label
    p_synthetic: float | None
    interpretation: str
    cues: str  # short "name value -> direction" list for the reply text
    fold: int | None  # index of the fold whose model scored this image


def _centre_crop(grey: np.ndarray) -> np.ndarray:
    """A CROP x CROP window at the centre, its origin on the 8-px grid so JPEG blocks stay aligned."""
    height, width = grey.shape
    top = max(0, (height - CROP) // 2) // 8 * 8
    left = max(0, (width - CROP) // 2) // 8 * 8
    return grey[top : top + CROP, left : left + CROP]


def _lag1_corr(values: np.ndarray) -> float:
    """Mean of the horizontal and vertical lag-1 Pearson correlations (0 for a flat image)."""
    out = []
    for a, b in ((values[:, :-1], values[:, 1:]), (values[:-1, :], values[1:, :])):
        a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
        denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
        out.append(float((a * b).sum()) / denom if denom > 0 else 0.0)
    return float(np.mean(out))


def _spectral(crop: np.ndarray, residual: np.ndarray) -> tuple[float, float, float]:
    """Radial power-spectrum slope, high-frequency energy ratio, residual spectral peak."""
    height, width = crop.shape
    window = np.outer(np.hanning(height), np.hanning(width))
    power = np.abs(np.fft.fft2((crop - crop.mean()) * window)) ** 2
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij"))
    band = (radius > 0.02) & (radius <= 0.5)
    bins = np.minimum((radius[band] / 0.5 * 32).astype(int), 31)
    radial = np.bincount(bins, power[band], 32) / np.maximum(np.bincount(bins, minlength=32), 1)
    centres = (np.arange(32) + 0.5) / 32 * 0.5
    used = radial > 0
    slope = np.polyfit(np.log10(centres[used]), np.log10(radial[used]), 1)[0] if used.sum() > 2 else 0.0
    total = float(power[band].sum())
    hf_ratio = float(power[band & (radius > 0.25)].sum()) / total if total > 0 else 0.0
    res_power = (np.abs(np.fft.fft2(residual)) ** 2)[radius > 0.05]
    median = float(np.median(res_power))
    peak = float(np.log10(res_power.max() / median)) if median > 0 else 0.0
    return float(slope), hf_ratio, peak


def _blockiness(crop: np.ndarray) -> float:
    """Mean absolute jump across 8-px grid lines divided by the mean jump elsewhere (1 = no grid)."""
    ratios = []
    for diffs in (np.abs(np.diff(crop, axis=1)), np.abs(np.diff(crop, axis=0)).T):
        on_grid = np.arange(diffs.shape[1]) % 8 == 7
        off = float(diffs[:, ~on_grid].mean()) if (~on_grid).any() else 0.0
        ratios.append(float(diffs[:, on_grid].mean()) / off if off > 0 and on_grid.any() else 1.0)
    return float(np.mean(ratios))


def image_features(data: bytes) -> np.ndarray:
    """The twelve statistics of FEATURES for one prepared image (PNG or JPEG bytes).

    Decoding a 1024 px PNG takes most of the time (~20 ms); the statistics add ~10 ms.
    """
    from scipy import ndimage, stats  # imported on use: a fully cached run never pays for it

    image = Image.open(io.BytesIO(data)).convert("RGB")
    grey = image.convert("L")
    crop = _centre_crop(np.asarray(grey)).astype(np.float64)
    residual = crop - ndimage.gaussian_filter(crop, 1.0)
    slope, hf_ratio, peak = _spectral(crop, residual)
    # HSV saturation = (max - min) / max of RGB, on a box-reduced copy (colour needs no fine detail)
    small = image.reduce(max(1, max(image.size) // THUMB))
    saturation = np.asarray(small.convert("HSV"))[:, :, 1] / 255.0
    counts = np.asarray(grey.histogram(), dtype=np.float64) / (grey.width * grey.height)
    nonzero = counts[counts > 0]
    kurtosis = float(stats.kurtosis(residual, axis=None)) if residual.std() > 0 else 0.0
    return np.array(
        [
            slope, hf_ratio, peak, float(residual.std()), kurtosis, _lag1_corr(residual),
            _lag1_corr(crop), _blockiness(crop), float(saturation.mean()), float(saturation.std()),
            float(-(nonzero * np.log2(nonzero)).sum()), float(counts[0] + counts[255]),
        ]
    )  # fmt: skip


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _explain(row: np.ndarray, contribution: np.ndarray, typical: np.ndarray) -> tuple[str, str]:
    """Top three cues for one image, as a long and a short text.

    ``contribution`` is the fold model's coefficient x the image's standardised value per feature (its
    share of the log-odds of "synthetic"); ``typical`` holds the fold's training medians (real, synthetic).
    """
    order = sorted(range(len(FEATURES)), key=lambda j: (-abs(contribution[j]), j))[:3]
    long, short = [], []
    for j in order:
        cue = f"{FEATURES[j][1]} {_fmt(row[j])}"
        direction = "synthetic" if contribution[j] > 0 else "real"
        long.append(
            f"{cue} (typical real {_fmt(typical[0, j])}, synthetic {_fmt(typical[1, j])}) → {direction}"
        )
        short.append(f"{cue} → {direction}")
    return "; ".join(long), "; ".join(short)


def score_modality(
    modality: str, truths: list[str], features: np.ndarray, groups: list[str]
) -> list[Verdict]:
    """Out-of-fold verdicts for the images of one modality (rows in the caller's order).

    Rows with the same group (sha256) always share a fold; classes are counted in distinct images.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.preprocessing import StandardScaler

    distinct = set(zip(groups, truths, strict=True))
    n_real, n_synth = (sum(truth == cls for _, truth in distinct) for cls in TRUTHS)
    if min(n_real, n_synth) < MIN_PER_CLASS:
        why = (
            f"Not scored: the forensic baseline needs at least {MIN_PER_CLASS} real and {MIN_PER_CLASS} "
            f"synthetic {modality} images to train out-of-fold; this run has {n_real} real and {n_synth} "
            "synthetic distinct images."
        )
        return [Verdict("uncertain", None, None, why, "too few training images", None)] * len(truths)
    target = np.array([1 if truth == "synthetic" else 0 for truth in truths])
    folds = StratifiedGroupKFold(n_splits=min(MAX_FOLDS, n_real, n_synth), shuffle=True, random_state=SEED)
    verdicts: list[Verdict | None] = [None] * len(truths)
    for fold, (train, test) in enumerate(folds.split(features, target, groups)):
        if len(set(target[train])) < 2:  # only possible with many duplicate groups; refuse, do not guess
            why = f"Not scored: fold {fold + 1} of {folds.n_splits} had only one class to train on."
            for row in test:
                verdicts[row] = Verdict("uncertain", None, None, why, "one-class training fold", fold)
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        model.fit(features[train], target[train])
        typical = np.vstack([np.median(features[train][target[train] == c], axis=0) for c in (0, 1)])
        p_synth = model.predict_proba(features[test])[:, 1]
        contributions = model[-1].coef_[0] * model[0].transform(features[test])
        trained_on = (
            f"Out-of-fold logistic model on {len(FEATURES)} image statistics (fold {fold + 1} of "
            f"{folds.n_splits}, trained on {len(train)} other {modality} images: "
            f"{int((target[train] == 0).sum())} real, {int(target[train].sum())} synthetic)."
        )
        for row, p, contribution in zip(test, p_synth.tolist(), contributions, strict=True):
            label = "synthetic" if p >= 0.5 else "real"
            cues, short = _explain(features[row], contribution, typical)
            text = f"{trained_on} P(synthetic)={p:.3f}. {ARROWS} Strongest cues: {cues}."
            verdicts[row] = Verdict(label, max(p, 1 - p), p, text, short, fold)
    return [verdict for verdict in verdicts if verdict is not None]


DETECTORS = ("forensic",)


def parse_baseline(prefix: str, rest: str, raw: str) -> ModelSpec:
    """Only ``baseline:forensic`` exists; another name is an error, not a silent alias."""
    if rest not in DETECTORS:
        raise SpecError(f"model spec {raw!r}: the baseline detectors are {', '.join(DETECTORS)}")
    return ModelSpec(provider=prefix, model=rest, base_url=None, raw=raw)


@provider(
    prefix="baseline",
    form="baseline:forensic",
    example="baseline:forensic",
    summary="local out-of-fold forensic detector on image statistics (offline, deterministic)",
    local=True,
    price=PriceRule(free_unless_priced=True),
    capabilities=Capabilities(local_detector=True),
    parse=parse_baseline,
    default_concurrency=2,
    notes="local, no network, no key",
)
class BaselineProvider(LocalDetector):
    """``baseline:forensic``: trains in ``prepare``; ``call`` looks up the out-of-fold verdict."""

    def __init__(self, spec: Any, options: Any):
        super().__init__(spec, options)
        self.verdicts: dict[tuple[str, str], Verdict] = {}
        self.failures: dict[str, tuple[str, str]] = {}  # sha256 -> (error_type, message)

    def params(self) -> dict[str, Any]:
        """Everything that changes the answer (cache key material)."""
        return {"detector": "forensic", "version": 1, "folds": MAX_FOLDS, "seed": SEED}

    async def prepare(self, items: list[BaselineItem]) -> None:
        """Measure every image (in a thread), then score each modality out-of-fold."""
        await asyncio.to_thread(self._prepare, list(items))

    def _prepare(self, items: list[BaselineItem]) -> None:
        # Sorted so that folds, and therefore answers, do not depend on the manifest's order.
        items = sorted(items, key=lambda item: (item.modality, item.image_sha256, item.truth))
        unique = {item.image_sha256: item for item in items}  # measure each distinct image once
        with ThreadPoolExecutor(max_workers=2) as pool:  # PIL, numpy FFT and scipy release the GIL
            results = dict(zip(unique, pool.map(_measure, unique.values()), strict=True))
        for sha, result in results.items():  # a load() that is not thread-safe gets one calm retry
            if isinstance(result, str):
                results[sha] = _measure(unique[sha])
        self.failures = {
            sha: ("image_rejected", f"baseline could not read this image: {result}")
            for sha, result in results.items()
            if isinstance(result, str)
        }
        for item in items:
            if item.truth not in TRUTHS:
                why = (
                    f"truth {item.truth!r} is not 'real' or 'synthetic'; the baseline trains on known truths"
                )
                self.failures[item.image_sha256] = ("bad_request", why)
        self.verdicts = {}
        for modality in sorted({item.modality for item in items}):
            rows = [
                item for item in items if item.modality == modality and item.image_sha256 not in self.failures
            ]
            if not rows:
                continue
            features = np.vstack([results[item.image_sha256] for item in rows])
            truths = [item.truth for item in rows]
            verdicts = score_modality(modality, truths, features, [item.image_sha256 for item in rows])
            for item, verdict in zip(rows, verdicts, strict=True):
                self.verdicts[(modality, item.image_sha256)] = verdict

    async def call(self, request: CallRequest) -> Reply:
        """The verdict computed in ``prepare`` for this image (no work, no network)."""
        key = (request.modality, request.image_sha256)
        if request.image_sha256 in self.failures:
            error_type, message = self.failures[request.image_sha256]
            raise ProviderError(error_type, message, retryable=False)
        if key not in self.verdicts:
            raise ProviderError(
                "not_prepared",
                f"image {request.image_sha256[:12]} ({request.modality or 'no modality'}) was not among the "
                "items given to prepare(); the baseline only scores images it measured out-of-fold",
                retryable=False,
            )
        verdict = self.verdicts[key]
        if verdict.label == "uncertain":
            # Not an answer but a missing one: an error row, so a later run with more images of the
            # modality retries it (an ok 'uncertain' would be cached for good and count as wrong).
            raise ProviderError("baseline_untrained", verdict.interpretation, retryable=False)
        text = f"{verdict.label.capitalize()} (p={verdict.confidence:.2f}). Cues: {verdict.cues}."
        return Reply(
            text=text,
            finish_reason="stop",
            model_version=f"forensic-v1 (sklearn {_sklearn_version()})",
            label=verdict.label,
            confidence=verdict.confidence,
            interpretation=verdict.interpretation,
            input_tokens=None,
            output_tokens=None,
        )


def _measure(item: BaselineItem) -> np.ndarray | str:
    """Features of one item, or the reason they could not be computed (a failure is data, not a crash)."""
    try:
        return image_features(item.load())
    except Exception as exc:  # any undecodable image becomes a per-image error
        return f"{type(exc).__name__}: {exc}"


def make_pipeline(*steps: Any) -> Any:
    """sklearn's make_pipeline, imported on use (a fully cached run never loads sklearn)."""
    from sklearn.pipeline import make_pipeline as sk_make_pipeline

    return sk_make_pipeline(*steps)


def _sklearn_version() -> str:
    from sklearn import __version__

    return __version__
