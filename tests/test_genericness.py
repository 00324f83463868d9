"""Genericness (TF-IDF swap test) on constructed texts."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cache.genericness import genericness

GENERIC = "Fundus photograph showing the optic disc, macula and retinal vessels; no abnormality."


def test_identical_texts_are_fully_generic() -> None:
    result = genericness([GENERIC] * 5, [f"img{i}" for i in range(5)])
    assert result["median_similarity"] == pytest.approx(1.0)
    assert result["near_duplicate_share"] == 1.0
    assert (result["n_pairs"], result["n_pairs_scored"], result["sampled"]) == (10, 10, False)


def test_disjoint_vocabularies_are_zero() -> None:
    texts = ["alpha beta gamma", "delta epsilon zeta", "eta theta iota", "kappa lambda mu"]
    result = genericness(texts, ["a", "b", "c", "d"])
    assert result["median_similarity"] == 0.0 and result["mean_similarity"] == 0.0
    assert result["near_duplicate_share"] == 0.0


def test_repeats_of_one_image_are_never_paired() -> None:
    # two identical texts of image a (repeats), the others disjoint: no pair scores above 0
    texts = ["cup disc ratio large", "cup disc ratio large", "haemorrhage inferior arcade", "drusen temporal"]
    result = genericness(texts, ["a", "a", "b", "c"])
    assert result["n_pairs"] == 5  # 6 pairs minus the one same-image pair
    assert result["near_duplicate_share"] == 0.0 and result["median_similarity"] == 0.0


def test_half_generic_by_hand() -> None:
    # images a, b say the same; c, d are unique: 1 of 6 pairs is a near-duplicate
    texts = [GENERIC, GENERIC, "drusen temporal quadrant", "venous beading superior"]
    result = genericness(texts, ["a", "b", "c", "d"], threshold=0.9)
    assert result["near_duplicate_share"] == pytest.approx(1 / 6)
    assert result["median_similarity"] == 0.0


def test_empty_texts_left_out_and_too_few_images() -> None:
    result = genericness(["", None, "   ", "only one text"], ["a", "b", "c", "d"])
    assert (result["n_empty"], result["n_images"], result["n_pairs"]) == (3, 1, 0)
    assert result["median_similarity"] is None
    assert genericness(["...", "!!"], ["a", "b"])["n_empty"] == 2  # no word at all
    with pytest.raises(ValueError, match="one image id per text"):
        genericness(["a"], [])


def test_large_group_is_sampled_with_a_seed() -> None:
    """10^4 interpretations: 5 * 10^7 pairs. Sampled, repeatable, and quick (no n x n matrix)."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(2000)])
    texts = [GENERIC if i % 4 == 0 else " ".join(rng.choice(words, 12)) for i in range(10_000)]
    images = [f"img{i}" for i in range(10_000)]
    started = time.perf_counter()
    first = genericness(texts, images, max_pairs=50_000, seed=3)
    elapsed = time.perf_counter() - started
    assert first["sampled"] and first["n_pairs"] == 10_000 * 9_999 // 2
    assert first["n_pairs_scored"] == 50_000
    assert first == genericness(texts, images, max_pairs=50_000, seed=3)
    # a quarter of texts are the generic one: about 1/16 of random pairs are identical
    assert first["near_duplicate_share"] == pytest.approx(1 / 16, abs=0.005)
    assert elapsed < 20
