"""The papers' metrics (docs/method.md §6) on inputs small enough to compute the answer by hand."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from training.metrics import (
    PaperMetrics,
    SIDAccumulator,
    accuracy,
    class_independence,
    class_similarity_from_attributes,
    contrastiveness,
    correlation,
    gmm_overlaps,
    nf_features,
    per_class,
    structural_grounding,
)
from training.metrics.contrastiveness import REG_COVAR, two_means_starts


def sid_at_k(feature_maps, weight, predicted, k: int = 5) -> float:
    """SID@k of maps [N, F, h, w] held in memory, in one batch of the accumulator."""
    accumulator = SIDAccumulator(weight, k)
    accumulator.update(feature_maps, predicted)
    return accumulator.compute()


E4 = math.exp(4.0)


# ---------------------------------------------------------------- accuracy and sparsity


def test_accuracy_from_logits_and_from_indices():
    logits = [[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]  # predicts 1, 0, 1
    assert accuracy(logits, [1, 1, 1]) == pytest.approx(2 / 3)
    assert accuracy(np.array([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == 0.75


def test_nf_features_and_per_class_count_nonzero_weights():
    weight = np.array([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, -1.0]])
    assert nf_features(weight) == 2  # columns 0 and 3
    assert per_class(weight) == 1.5  # 3 nonzeros over 2 classes


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: accuracy([0, 1, 1], [0, 1]), "logits_or_pred has 3 rows but labels has 2"),
        (lambda: accuracy([0.5, 1.0], [0, 1]), "logits_or_pred must hold whole numbers"),
        (lambda: accuracy([[0.1, np.nan]], [0]), "logits_or_pred contains NaN"),
        (lambda: accuracy([0, 1], [0, -1]), "labels must be in"),
        (lambda: accuracy(np.zeros((2, 2, 2)), [0, 1]), "logits_or_pred must be logits"),
        (lambda: nf_features(np.ones(3)), "weight must have 2 dimensions"),
        (lambda: per_class(np.zeros((0, 3))), "weight must not be empty"),
    ],
)
def test_classification_metrics_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- SID@k


def one_hot_map(position: int, value: float, size: int = 2) -> np.ndarray:
    m = np.zeros(size * size)
    m[position] = value
    return m.reshape(size, size)


def test_sid_of_maps_peaking_at_different_places():
    # A 2×2 map with one nonzero value v: divided by its mean |value| v/4 it is 4 at the peak,
    # 0 elsewhere; softmax: e⁴/(e⁴+3) at the peak, 1/(e⁴+3) elsewhere. Two maps peaking at
    # different cells: Σ max = (2e⁴ + 2)/(e⁴+3); / k=2 → (e⁴+1)/(e⁴+3). The peak heights (3 and
    # 0.5) do not matter: SID only sees the shape of each map.
    maps = np.stack([one_hot_map(0, 3.0), one_hot_map(3, 0.5)])[None]
    assert sid_at_k(maps, np.ones((1, 2)), [0], k=2) == pytest.approx((E4 + 1) / (E4 + 3))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sid_of_identical_maps_is_one_over_k(k):
    rng = np.random.default_rng(k)
    m = rng.random((4, 4))
    maps = np.repeat(m[None, None], k, axis=1)
    assert sid_at_k(maps, np.ones((1, k)), [0], k=k) == pytest.approx(1 / k)


def test_sid_of_all_zero_maps_is_one_over_k():
    # mean |value| is clamped, the map stays 0, softmax is uniform: identical maps
    assert sid_at_k(np.zeros((1, 2, 3, 3)), np.ones((1, 2)), [0], k=2) == pytest.approx(0.5)


def test_sid_takes_the_k_largest_absolute_weights_of_the_predicted_class():
    # class 0 ranks features by |w|: 1 (|-2|), 2 (1.5), 0 (0.1); features 1 and 2 are identical
    # maps → 1/2. Ranking by signed weight would take 2 and 0 (different peaks) instead.
    maps = np.stack([one_hot_map(0, 1.0), one_hot_map(3, 1.0), one_hot_map(3, 1.0)])[None]
    weight = np.array([[0.1, -2.0, 1.5], [1.0, 1.0, 0.0]])
    assert sid_at_k(maps, weight, [0], k=2) == pytest.approx(0.5)
    # class 1's top two are features 0 and 1: different peaks
    assert sid_at_k(maps, weight, [1], k=2) == pytest.approx((E4 + 1) / (E4 + 3))
    # logits are accepted for `predicted` (argmax = class 1)
    assert sid_at_k(maps, weight, [[0.2, 0.9]], k=2) == pytest.approx((E4 + 1) / (E4 + 3))


def test_sid_skips_images_whose_class_has_fewer_than_k_weights():
    maps = np.stack([one_hot_map(0, 1.0), one_hot_map(3, 1.0)])[None].repeat(3, axis=0)
    weight = np.array([[1.0, 1.0], [0.0, 1.0]])  # class 1 has one nonzero weight
    acc = SIDAccumulator(weight, k=2)
    acc.update(maps, [0, 1, 1])
    assert (acc.count, acc.skipped) == (1, 2)
    assert acc.compute() == pytest.approx((E4 + 1) / (E4 + 3))
    only_skipped = SIDAccumulator(weight, k=2)
    only_skipped.update(maps[:1], [1])
    with pytest.raises(ValueError, match="no image was counted"):
        only_skipped.compute()


def test_sid_streaming_equals_one_pass_and_accepts_tensors():
    rng = np.random.default_rng(0)
    maps = rng.random((10, 6, 5, 5)) ** 4
    weight = (rng.random((3, 6)) > 0.3) * rng.normal(size=(3, 6))
    weight[:, :3] = 1.0  # every class has at least 3 nonzero weights
    pred = rng.integers(0, 3, 10)
    acc = SIDAccumulator(torch.tensor(weight), k=3)
    for lo in range(0, 10, 4):
        acc.update(
            torch.tensor(maps[lo : lo + 4], dtype=torch.float32), torch.tensor(pred[lo : lo + 4])
        )
    assert acc.count == 10
    assert acc.compute() == pytest.approx(sid_at_k(maps, weight, pred, k=3), rel=1e-6)


def test_sid_stays_within_one_over_k_and_one_on_random_maps():
    rng = np.random.default_rng(1)
    for trial in range(20):
        k = int(rng.integers(1, 5))
        maps = rng.random((8, 6, 4, 4)) ** rng.uniform(0.5, 20)
        value = sid_at_k(maps, rng.normal(size=(4, 6)), rng.integers(0, 4, 8), k=k)
        assert 1 / k - 1e-12 <= value <= 1 + 1e-12


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: SIDAccumulator(np.ones((2, 3)), k=4), "k=4 exceeds the 3 features"),
        (lambda: SIDAccumulator(np.ones((2, 3)), k=0), "k must be a positive integer"),
        (lambda: SIDAccumulator(np.ones(3), k=1), "weight must have 2 dimensions"),
        (
            lambda: sid_at_k(np.ones((2, 3, 4)), np.ones((2, 3)), [0, 1], 2),
            r"feature_maps must be \[B, n, h, w\]",
        ),
        (
            lambda: sid_at_k(np.ones((2, 4, 2, 2)), np.ones((2, 3)), [0, 1], 2),
            "4 maps per image but weight has 3",
        ),
        (
            lambda: sid_at_k(np.ones((2, 3, 2, 2)), np.ones((2, 3)), [0], 2),
            "feature_maps has 2 rows but predicted has 1",
        ),
        (
            lambda: sid_at_k(np.ones((1, 3, 2, 2)), np.ones((2, 3)), [2], 2),
            "predicted must be in 0..1",
        ),
        (
            lambda: sid_at_k(np.full((1, 3, 2, 2), np.nan), np.ones((2, 3)), [0], 2),
            "feature_maps contains NaN",
        ),
    ],
)
def test_sid_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- Class-Independence


def test_class_independence_of_features_that_fire_for_one_class_only_is_zero():
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    assert class_independence(features, [0, 0, 1, 1], 2) == pytest.approx(0.0)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_class_independence_of_features_equal_across_classes_is_one_minus_one_over_c(num_classes):
    labels = np.repeat(np.arange(num_classes), 2)
    features = np.tile([[1.0, -2.0], [3.0, 5.0]], (num_classes, 1))  # same two values per class
    assert class_independence(features, labels, num_classes) == pytest.approx(1 - 1 / num_classes)


def test_class_independence_by_hand_with_a_constant_feature():
    # feature 0 shifted to min 0: [0, 1, 3] → class 0 holds 1/4, class 1 holds 3/4 → 3/4.
    # feature 1 is constant: shares = class frequencies (2/3, 1/3) → 2/3.
    features = np.array([[1.0, 7.0], [2.0, 7.0], [4.0, 7.0]])
    assert class_independence(features, [0, 0, 1], 2) == pytest.approx(1 - (3 / 4 + 2 / 3) / 2)


def test_class_independence_stays_in_range_on_random_features():
    rng = np.random.default_rng(2)
    for trial in range(20):
        c = int(rng.integers(2, 6))
        labels = rng.integers(0, c, 40)
        value = class_independence(rng.normal(size=(40, 5)) ** 3, labels, c)
        assert 0 <= value <= 1 - 1 / c + 1e-12


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: class_independence(np.ones((3, 2)), [0, 1], 2),
            "features has 3 rows but labels has 2",
        ),
        (lambda: class_independence(np.ones((2, 2)), [0, 2], 2), "labels must be in 0..1"),
        (
            lambda: class_independence(np.ones((2, 2)), [0, 1], 0),
            "num_classes must be a positive integer",
        ),
        (lambda: class_independence([[np.inf, 1.0]], [0], 1), "features contains NaN or infinite"),
    ],
)
def test_class_independence_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- Correlation


def test_correlation_of_identical_and_of_orthogonal_features():
    assert correlation(np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])) == pytest.approx(1.0)
    assert correlation(np.eye(3)) == pytest.approx(0.0)


def test_correlation_by_hand():
    # columns (1,0), (1,1), (0,1): cos = 1/√2, 0, 1/√2 → every feature's max is 1/√2
    features = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    assert correlation(features) == pytest.approx(1 / math.sqrt(2))


def test_correlation_takes_the_max_over_the_other_features_only():
    # the two features are opposite: cos = −1 (the authors' code would report 0 here)
    assert correlation(np.array([[1.0, -1.0], [-1.0, 1.0]])) == pytest.approx(-1.0)


def test_correlation_stays_in_range_on_random_features():
    rng = np.random.default_rng(3)
    for trial in range(20):
        assert -1.0 <= correlation(rng.normal(size=(30, int(rng.integers(2, 8))))) <= 1.0


def test_correlation_needs_two_features():
    with pytest.raises(ValueError, match="features needs at least 2 features"):
        correlation(np.ones((4, 1)))


# ---------------------------------------------------------------- Contrastiveness


def test_two_means_start_splits_at_the_largest_gap_by_hand():
    start = two_means_starts(np.array([[0.0], [1.0], [10.0], [11.0]]))
    np.testing.assert_allclose(start.weights, [[0.5, 0.5]])
    np.testing.assert_allclose(start.means, [[0.5, 10.5]])
    np.testing.assert_allclose(start.variances, [[0.25 + REG_COVAR, 0.25 + REG_COVAR]])


def test_contrastiveness_of_a_two_valued_and_a_constant_feature():
    # two point masses: components of width √1e-6 one unit apart → overlap 0; a constant
    # feature: the components coincide → overlap 1. Contrastiveness = 1 − (0 + 1)/2.
    features = np.stack([np.repeat([0.0, 1.0], 20), np.full(40, 3.0)], axis=1)
    np.testing.assert_allclose(gmm_overlaps(features), [0.0, 1.0], atol=1e-9)
    assert contrastiveness(features) == pytest.approx(0.5)


def test_contrastiveness_of_bimodal_features_beats_unimodal_ones():
    rng = np.random.default_rng(4)
    bimodal = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(10, 1, (300, 2))])
    unimodal = rng.normal(0, 1, (600, 2))
    assert contrastiveness(bimodal) > 0.99
    assert contrastiveness(unimodal) < 0.8


def test_gmm_overlaps_match_sklearns_default_start():
    # the authors fit GaussianMixture(2) with its k-means start; ours starts at the exact
    # 1-D 2-means split. EM stops at sklearn's default tolerance (as theirs), so the two fits
    # agree to about 0.01 in overlap, not exactly (with tol=1e-8 both reach the same optimum).
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(5)
    features = np.concatenate([rng.normal(0, 1, (200, 3)), rng.normal(2.5, 0.7, (100, 3))])
    expected = []
    for f in range(3):
        gmm = GaussianMixture(2, random_state=0).fit(features[:, f : f + 1])
        sd = np.sqrt(gmm.covariances_.ravel())
        expected.append(
            NormalDist(gmm.means_[0, 0], sd[0]).overlap(NormalDist(gmm.means_[1, 0], sd[1]))
        )
    np.testing.assert_allclose(gmm_overlaps(features), expected, atol=1e-2)


def test_contrastiveness_max_features_takes_evenly_spaced_columns():
    rng = np.random.default_rng(6)
    features = rng.normal(size=(40, 5))
    features[:, 0] = np.repeat([0.0, 1.0], 20)  # overlap 0
    features[:, 4] = 2.0  # overlap 1
    assert contrastiveness(features, max_features=2) == pytest.approx(0.5)


def test_contrastiveness_stays_in_range_on_random_features():
    rng = np.random.default_rng(7)
    for trial in range(5):
        assert 0.0 <= contrastiveness(rng.normal(size=(50, 3)) ** int(rng.integers(1, 4))) <= 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: contrastiveness(np.ones((1, 3))), "features needs at least 2 samples"),
        (
            lambda: contrastiveness(np.ones((4, 3)), max_features=0),
            "max_features must be a positive integer",
        ),
        (lambda: contrastiveness(np.array([[1.0], [np.nan]])), "features contains NaN"),
    ],
)
def test_contrastiveness_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- Structural Grounding


def test_structural_grounding_by_hand():
    # model: classes 0 and 1 share their feature (cos 1), class 2 shares nothing (cos 0)
    weight = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    truth = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.2], [0.5, 0.2, 1.0]])
    assert structural_grounding(weight, truth, top=1) == pytest.approx(1 / 0.8)  # pair (0,1)
    assert structural_grounding(weight, truth, top=2) == pytest.approx(1 / 1.3)  # + (0,2)
    assert structural_grounding(weight, truth, top=3) == pytest.approx(1 / 1.5)


def test_class_similarity_from_attributes_is_cosine_by_hand():
    sim = class_similarity_from_attributes([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(sim, [[1, r, 0], [r, 1, r], [0, r, 1]], atol=1e-12)
    # weights [1,1] and [1,0] have cos 1/√2 too: a model that mirrors the attributes scores 1
    weight = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    assert structural_grounding(weight, sim, top=3) == pytest.approx(1.0)


def test_structural_grounding_is_nonnegative_for_binary_weights():
    rng = np.random.default_rng(8)
    for trial in range(20):
        weight = (rng.random((6, 5)) > 0.5).astype(float)
        truth = class_similarity_from_attributes(rng.random((6, 10)))
        assert structural_grounding(weight, truth, top=int(rng.integers(1, 16))) >= 0.0


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: structural_grounding(np.ones((3, 2)), np.eye(2), 1),
            r"class_similarity must be \[3, 3\]",
        ),
        (
            lambda: structural_grounding(np.ones((2, 2)), [[1, 0.5], [0.2, 1]], 1),
            "must be symmetric",
        ),
        (lambda: structural_grounding(np.ones((3, 2)), np.eye(3), 4), "top=4 exceeds the 3 pairs"),
        (
            lambda: structural_grounding(np.ones((3, 2)), np.eye(3), 0),
            "top must be a positive integer",
        ),
        (lambda: structural_grounding(np.ones((3, 2)), np.eye(3), 2), "sum to 0"),
    ],
)
def test_structural_grounding_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- the table row


def test_paper_metrics_use_the_papers_names_and_serialise():
    row = PaperMetrics(
        accuracy=0.851,
        nf_features=50,
        per_class=5.0,
        sid=0.92,
        class_independence=0.95,
        correlation=0.2,
        contrastiveness=None,
        structural_grounding=0.7,
    )
    d = json.loads(json.dumps(row.to_dict(), allow_nan=False))
    assert d == {
        "Accuracy": 0.851,
        "NFfeatures": 50,
        "PerClass": 5.0,
        "SID@5": 0.92,
        "Class-Independence": 0.95,
        "Contrastiveness": None,
        "Correlation": 0.2,
        "Structural Grounding": 0.7,
    }
