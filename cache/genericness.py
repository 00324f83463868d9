"""Genericness of interpretations, measured without a grader (issue 12, part 3): a swap test.

An interpretation is generic when it would fit any other image of the same modality. For one
model and modality: the TF-IDF cosine similarity of its interpretations of DIFFERENT images (two
repeats of one image are never paired), summarised by the median and by the share of
near-duplicate pairs (similarity >= ``threshold``, default 0.9).

TF-IDF: scikit-learn's ``TfidfVectorizer`` defaults (lower case, words of 2+ letters or digits,
smoothed idf, L2-normalised rows), fitted on that group's interpretations only, so "common" means
common in what this model wrote about this modality. Empty interpretations, and those with no
word at all, are left out (counted in ``n_empty``).

Scale: n texts have about n^2 / 2 pairs (5 * 10^7 at 10^4). Up to ``max_pairs`` pairs (default
200,000) every pair is scored, a block of rows at a time; above that, ``max_pairs`` pairs are
drawn uniformly (with replacement) from the pairs of different images with a fixed ``seed``, and
``sampled`` says so. Memory stays O(block x n) or O(max_pairs), never n x n.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

NEAR_DUPLICATE = 0.9
MAX_PAIRS = 200_000
BLOCK_ROWS = 256


def tfidf_matrix(texts: Sequence[str]) -> Any:
    """L2-normalised TF-IDF rows (a scipy sparse matrix); scikit-learn is imported only here."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer().fit_transform(list(texts))


def _all_pairs(matrix: Any, images: np.ndarray) -> np.ndarray:
    """Similarities of every pair i < j of different images, a block of rows at a time."""
    out = []
    n = matrix.shape[0]
    for start in range(0, n, BLOCK_ROWS):
        block = (matrix[start : start + BLOCK_ROWS] @ matrix.T).toarray()
        rows = np.arange(start, min(start + BLOCK_ROWS, n))
        keep = (np.arange(n)[None, :] > rows[:, None]) & (images[None, :] != images[rows][:, None])
        out.append(block[keep])
    return np.concatenate(out) if out else np.empty(0)


def _sampled_pairs(matrix: Any, images: np.ndarray, n_pairs: int, seed: int) -> np.ndarray:
    """Similarities of ``n_pairs`` random pairs of different images (rejection sampling)."""
    rng = np.random.default_rng(seed)
    n = matrix.shape[0]
    left, right = [], []
    have = 0
    while have < n_pairs:
        i, j = rng.integers(0, n, (2, n_pairs))
        ok = images[i] != images[j]
        left.append(i[ok])
        right.append(j[ok])
        have += int(ok.sum())
    i, j = np.concatenate(left)[:n_pairs], np.concatenate(right)[:n_pairs]
    sims = [
        np.asarray(matrix[i[s : s + 50_000]].multiply(matrix[j[s : s + 50_000]]).sum(axis=1)).ravel()
        for s in range(0, n_pairs, 50_000)
    ]
    return np.concatenate(sims)


def genericness(
    texts: Sequence[str | None],
    image_ids: Sequence[str],
    threshold: float = NEAR_DUPLICATE,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> dict[str, Any]:
    """Swap-test summary of one group's interpretations (``image_ids[i]`` is the image of
    ``texts[i]``). Keys: n_texts, n_empty, n_images, n_pairs (pairs of different images),
    n_pairs_scored, sampled, median_similarity, mean_similarity, near_duplicate_share,
    threshold, seed. The similarity figures are None with fewer than two images."""
    if len(texts) != len(image_ids):
        raise ValueError("one image id per text")
    kept = [(t, img) for t, img in zip(texts, image_ids, strict=True) if t and t.strip()]
    result: dict[str, Any] = {
        "n_texts": len(texts),
        "threshold": threshold,
        "seed": seed,
        "median_similarity": None,
        "mean_similarity": None,
        "near_duplicate_share": None,
        "sampled": False,
        "n_pairs_scored": 0,
    }
    matrix, images = None, np.array([img for _t, img in kept], dtype=object)
    if kept:
        try:
            matrix = tfidf_matrix([t for t, _img in kept])
        except ValueError:  # no word in any text: "empty vocabulary"
            matrix = None
    if matrix is not None:
        has_words = np.asarray(matrix.getnnz(axis=1) > 0)
        matrix, images = matrix[has_words], images[has_words]
    else:
        images = images[:0]
    per_image = Counter(images.tolist())
    n = len(images)
    n_pairs = n * (n - 1) // 2 - sum(c * (c - 1) // 2 for c in per_image.values())
    result |= {"n_empty": len(texts) - n, "n_images": len(per_image), "n_pairs": n_pairs}
    if n_pairs == 0:
        return result
    if n_pairs <= max_pairs:
        sims = _all_pairs(matrix, images)
    else:
        sims = _sampled_pairs(matrix, images, max_pairs, seed)
    sims = np.clip(sims, 0.0, 1.0)  # rounding can put identical texts at 1 + 1e-16
    return result | {
        "sampled": n_pairs > max_pairs,
        "n_pairs_scored": int(sims.size),
        "median_similarity": float(np.median(sims)),
        "mean_similarity": float(sims.mean()),
        "near_duplicate_share": float((sims >= threshold).mean()),
    }
