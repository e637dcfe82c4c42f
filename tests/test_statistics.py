"""A, R, b (docs/method.md §2) on constructed examples whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.statistics import (
    LOCALITY_SCALE,
    AssignmentStatistics,
    StatisticsAccumulator,
    locality_bias,
    redundancy,
    robust_rescale,
    within_class_redundancy,
)


def _accumulate(features, labels, maps, num_classes, batch=3):
    acc = StatisticsAccumulator(features.shape[1], num_classes)
    for i in range(0, len(labels), batch):
        acc.update(features[i : i + batch], labels[i : i + batch], maps[i : i + batch])
    return acc.finalize()


def test_correlation_of_class_indicators():
    # 4 balanced classes; feature c fires exactly on class c, feature 4 is dead (constant).
    C, per = 4, 5
    labels = np.repeat(np.arange(C), per)
    features = np.zeros((len(labels), C + 1))
    features[np.arange(len(labels)), labels] = 2.0
    features[:, C] = 0.7
    maps = np.broadcast_to(features[:, :, None, None], (len(labels), C + 1, 3, 3)).copy()
    stats = _accumulate(features, labels, maps, C)
    # corr(1[y=c], 1[y=c]) = 1; corr(1[y=c], 1[y=d]) = -p²/(p(1-p)) = -1/(C-1); max |A| = 1
    expected = np.full((C, C), -1.0 / (C - 1))
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(stats.A[:C], expected, atol=1e-12)
    np.testing.assert_array_equal(stats.A[C], 0.0)
    np.testing.assert_allclose(stats.mean, [0.5, 0.5, 0.5, 0.5, 0.7])
    np.testing.assert_allclose(stats.std[:C], np.sqrt(4 * 0.25 * 0.75))  # 2·sqrt(p(1-p))
    assert stats.num_samples == C * per


def test_streaming_equals_numpy_corrcoef():
    rng = np.random.default_rng(0)
    N, F, C = 40, 6, 3
    labels = rng.integers(0, C, N)
    labels[:C] = np.arange(C)
    features = rng.random((N, F)) * 5 + 100.0  # a large offset tests numerical conditioning
    maps = rng.random((N, F, 4, 4))
    stats = _accumulate(features, labels, maps, C, batch=7)
    corr = np.array(
        [[np.corrcoef(features[:, f], labels == c)[0, 1] for c in range(C)] for f in range(F)]
    )
    np.testing.assert_allclose(stats.A, corr / np.abs(corr).max(), atol=1e-9)


def test_redundancy_is_cosine_upper_triangle_without_negatives():
    A = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    R = redundancy(A)
    expected = np.array(
        [
            [0, 1, 0, 0],  # rows 0 and 1 point the same way; row 3 is opposite: -1 → 0
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ],
        dtype=float,
    )
    np.testing.assert_allclose(R, expected, atol=1e-12)


def test_within_class_redundancy_streams_to_the_correlation_of_class_residuals():
    rng = np.random.default_rng(3)
    N, F, C = 60, 5, 3
    labels = rng.integers(0, C, N)
    labels[:C] = np.arange(C)
    features = rng.random((N, F)) * 3 + 50.0  # an offset: the shifted sums must cancel it
    features[:, 1] = features[:, 0] * 2 + 0.1 * rng.random(N)  # a near-copy of feature 0
    features[:, 4] = labels * 1.5  # constant within each class: correlates with nothing
    maps = rng.random((N, F, 2, 2))
    stats = _accumulate(features, labels, maps, C, batch=7)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(C)])
    residual = features - means[labels]
    corr = np.corrcoef(residual[:, :4], rowvar=False)
    expected = np.zeros((F, F))
    expected[:4, :4] = np.triu(np.clip(corr, 0, None), 1)  # max |corr| is the diagonal's 1
    np.testing.assert_allclose(stats.R_within, expected, atol=1e-9)
    assert stats.R_within[0, 1] > 0.95 and np.all(stats.R_within[:, 4] == 0)
    assert np.all(np.tril(stats.R_within) == 0)
    assert stats.redundancy("within_class") is stats.R_within
    assert stats.redundancy("class_similarity") is stats.R


def test_within_class_tells_a_duplicate_from_a_concept_of_the_same_classes():
    """Two concepts in exactly the same classes give their detectors the same row of A (R = 1),
    but only two detectors of one concept vary together inside a class."""
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(4), 50)
    in_classes = np.isin(labels, [0, 1]).astype(float)
    size_a, size_b = rng.random(200), rng.random(200)  # each concept's own variation
    duplicate = in_classes * size_a
    features = np.stack(
        [duplicate, duplicate * 0.8 + 0.01 * rng.random(200), in_classes * size_b], axis=1
    )
    maps = np.broadcast_to(features[:, :, None, None], (200, 3, 2, 2)).copy()
    stats = _accumulate(features, labels, maps, 4, batch=16)
    assert stats.R[0, 1] == pytest.approx(stats.R[0, 2], abs=0.05)  # alike by class
    assert stats.R_within[0, 1] > 0.95
    assert stats.R_within[0, 2] < 0.3


def test_within_class_redundancy_of_hand_made_sums():
    # two classes of two images; within class 0 the features move together, in class 1 apart
    x = np.array([[0.0, 0.0], [2.0, 2.0], [5.0, 7.0], [7.0, 5.0]])
    labels = np.array([0, 0, 1, 1])
    class_sums = np.stack([x[labels == c].sum(axis=0) for c in range(2)])
    R = within_class_redundancy(x.T @ x, class_sums, np.array([2.0, 2.0]))
    # residuals (−1, −1), (1, 1), (−1, 1), (1, −1): correlation 0, so nothing is redundant
    np.testing.assert_allclose(R, 0.0, atol=1e-12)


def test_robust_rescale_clips_outliers_to_the_main_cluster():
    values = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 100.0])
    out = robust_rescale(values)
    # the outlier takes the cluster's upper end (0.6): the vector becomes 0..0.6 with 0.6 twice
    clipped = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6])
    centred = clipped - clipped.mean()
    np.testing.assert_allclose(out, centred / np.abs(centred).max() * LOCALITY_SCALE)
    assert out.mean() == pytest.approx(0.0, abs=1e-12)
    assert np.abs(out).max() == pytest.approx(LOCALITY_SCALE)


def test_robust_rescale_keeps_the_sign_of_clipped_values():
    cluster = np.linspace(1.0, 1.4, 21)
    values = np.concatenate([[-50.0], cluster])
    out = robust_rescale(values)
    # -50 lies below the cluster [1.0, 1.4]: it becomes |1.0| · sign(-50) = -1.0
    clipped = np.concatenate([[-1.0], cluster])
    centred = clipped - clipped.mean()
    np.testing.assert_allclose(out, centred / np.abs(centred).max() * LOCALITY_SCALE)


def test_constant_scores_rescale_to_zero():
    np.testing.assert_array_equal(robust_rescale(np.full(5, 3.0)), np.zeros(5))


def test_locality_prefers_peaked_central_features_and_punishes_border_peaks():
    N, h, w = 6, 5, 5
    maps = np.zeros((N, 3, h, w))
    maps[:, 0, 2, 2] = 8.0  # sharp peak in the centre
    maps[:, 1] = 1.0
    maps[:, 1, 2, 2] = 1.5  # weak peak in the centre: spread out
    maps[:, 2, 0, 3] = 8.0  # sharp peak on the top border
    features = maps.mean(axis=(2, 3))
    labels = np.arange(N) % 2
    acc = StatisticsAccumulator(3, 2)
    acc.update(features, labels, maps)
    # raw scores, by hand: ω = x / Σx; loc = mean ω · max softmax; edge = -Σ ω · on_border
    omega = features / features.sum(axis=1, keepdims=True)
    peak = lambda a: np.exp(a) / (np.exp(a) + (h * w - 1))
    peak_weak = np.exp(1.5) / (np.exp(1.5) + (h * w - 1) * np.e)
    np.testing.assert_allclose(acc.loc / N, omega.mean(axis=0) * [peak(8.0), peak_weak, peak(8.0)])
    np.testing.assert_allclose(acc.edge, [0.0, 0.0, -omega[:, 2].sum()])
    stats = acc.finalize()
    # the border feature is set to min(L), which here is the spread feature's score: they tie
    # at the bottom, below the sharp central feature
    assert stats.b[0] > stats.b[1]
    assert stats.b[2] == stats.b[1] == stats.b.min()
    np.testing.assert_allclose(stats.b, locality_bias(acc.loc / N, acc.edge))


def test_torch_inputs_and_save_load(tmp_path):
    rng = np.random.default_rng(1)
    maps = torch.rand(8, 4, 3, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    acc = StatisticsAccumulator(4, 3)
    acc.update(maps.mean(dim=(2, 3)), labels, maps)
    stats = acc.finalize()
    stats.save(tmp_path / "stats.npz")
    again = AssignmentStatistics.load(tmp_path / "stats.npz")
    for field in ("A", "R", "R_within", "b", "mean", "std"):
        np.testing.assert_array_equal(getattr(stats, field), getattr(again, field))
    assert again.num_samples == 8
    assert rng is not None


def test_bad_batches_and_missing_classes():
    acc = StatisticsAccumulator(3, 4)
    with pytest.raises(ValueError, match="batch shapes disagree"):
        acc.update(np.ones((2, 3)), np.zeros(2), np.ones((2, 4, 2, 2)))
    with pytest.raises(ValueError, match="labels must be in 0..3"):
        acc.update(np.ones((2, 3)), np.array([0, 7]), np.ones((2, 3, 2, 2)))
    acc.update(np.ones((2, 3)), np.array([0, 1]), np.ones((2, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"classes \[2, 3\] have no training samples"):
        acc.finalize()
