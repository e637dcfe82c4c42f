"""Ground-truth concept metrics: feature → concept matching, class edges, the pointing game."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.metrics import (
    UNMATCHED,
    ConceptInstance,
    GroundTruthReport,
    PointingGame,
    concept_auc,
    edge_scores,
    match_features_to_concepts,
    pointing_game,
)

# ---------------------------------------------------------------- matching by AUC


def test_auc_by_hand():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 0.35>0.1, 0.35<0.4, 0.8>both → 3 of 4 pairs
    auc = concept_auc([[0.1], [0.4], [0.35], [0.8]], [[0], [0], [1], [1]])
    assert auc == pytest.approx(np.array([[0.75]]))


def test_auc_counts_ties_as_one_half():
    # positives {1, 2} vs negatives {1, 2}: tie ½, loss 0, win 1, tie ½ → 2/4
    assert concept_auc([[1.0], [1.0], [2.0], [2.0]], [[0], [1], [0], [1]])[0, 0] == pytest.approx(
        0.5
    )


def test_auc_agrees_with_sklearn_on_random_data():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 4)).round(1)  # rounding makes ties
    present = rng.random((60, 3)) < 0.4
    auc = concept_auc(torch.tensor(features), present)
    for f in range(4):
        for c in range(3):
            assert auc[f, c] == pytest.approx(roc_auc_score(present[:, c], features[:, f]))


def test_each_feature_is_matched_to_the_concept_it_tracks():
    # six images; concept 0 in images 0-2, concept 1 in 0, 3, 4, concept 2 in every image
    present = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 1], [0, 0, 1]])
    features = np.stack(
        [
            present[:, 1] * 2.0 + [0.1, 0.2, 0.3, 0.0, 0.1, 0.2],  # concept 1 exactly: AUC 1
            present[:, 0] * 5.0,  # concept 0 exactly
            -present[:, 0] * 1.0,  # the opposite of concept 0: detects nothing
        ],
        axis=1,
    )
    match = match_features_to_concepts(features, present)
    assert np.isnan(match.auc[:, 2]).all()  # a concept in every image has no AUC
    assert match.concept.tolist() == [1, 0, 1]
    np.testing.assert_allclose(match.best_auc[:2], [1.0, 1.0])
    # feature 2 vs concept 0: AUC 0. vs concept 1: positives (images 0,3,4) = (-1, 0, 0),
    # negatives (1,2,5) = (-1, -1, 0); -1 scores ½+½+0, each 0 scores 1+1+½ → 6/9
    assert match.best_auc[2] == pytest.approx(6 / 9)
    strict = match_features_to_concepts(features, present, min_auc=0.9)
    assert strict.concept.tolist() == [1, 0, UNMATCHED]


def test_auc_stays_in_range_on_random_data():
    rng = np.random.default_rng(1)
    for trial in range(20):
        auc = concept_auc(rng.normal(size=(20, 3)), rng.random((20, 4)) < 0.5)
        defined = auc[~np.isnan(auc)]
        assert ((defined >= 0) & (defined <= 1)).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: concept_auc(np.ones((3, 2)), np.ones((2, 2))),
            "features has 3 rows but concept_present has 2",
        ),
        (lambda: concept_auc(np.ones((2, 2)), [[0, 2], [1, 0]]), "concept_present must be binary"),
        (
            lambda: concept_auc(np.ones((2, 2)), [[1, 0], [1, 0]]),
            "every concept is present in all images or in none",
        ),
        (lambda: concept_auc([[np.nan], [1.0]], [[0], [1]]), "features contains NaN"),
        (
            lambda: match_features_to_concepts([[0.0], [1.0]], [[0], [1]], min_auc=1.5),
            "min_auc must be in",
        ),
    ],
)
def test_matching_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- class → concept edges


def test_edge_scores_by_hand():
    # features 0 and 1 both detect concept 0, feature 2 concept 1, feature 3 nothing.
    # class 0 uses 0, 1, 2 → claims {0, 1} (one duplicate); truth {0, 2}
    # class 1 uses 2, 3 → claims {1} + one unmatched edge; truth {1}
    # correct (0,0), (1,1) = 2; claims 3 distinct + 1 unmatched = 4; true edges 3
    weight = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    truth = np.array([[1, 0, 1], [0, 1, 0]])
    scores = edge_scores(weight, [0, 0, 1, UNMATCHED], truth)
    assert scores.precision == pytest.approx(2 / 4)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))  # = 4/7
    assert (scores.correct_edges, scores.claimed_edges, scores.true_edges) == (2, 4, 3)
    assert (scores.duplicate_edges, scores.unmatched_edges) == (1, 1)
    # a negative weight claims the absence of a feature, not a concept: it changes nothing
    signed = weight.copy()
    signed[1, 0] = -0.7
    assert edge_scores(signed, [0, 0, 1, UNMATCHED], truth) == scores


def test_edge_scores_of_a_perfect_model_are_one():
    truth = np.array([[1, 1, 0], [0, 1, 1]])
    scores = edge_scores(truth.astype(float), [0, 1, 2], truth)
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 1.0, 1.0)


def test_edge_scores_with_no_correct_edge_are_zero():
    scores = edge_scores([[1.0, 0.0]], [1, 0], [[1, 0]])
    assert (scores.precision, scores.recall, scores.f1) == (0.0, 0.0, 0.0)


def test_edge_scores_stay_in_range_on_random_inputs():
    rng = np.random.default_rng(2)
    for trial in range(30):
        weight = rng.normal(size=(5, 6)) * (rng.random((5, 6)) < 0.5)
        weight[0, 0] = 1.0
        truth = rng.random((5, 4)) < 0.4
        truth[0, 0] = True
        s = edge_scores(weight, rng.integers(-1, 4, 6), truth)
        assert all(0.0 <= v <= 1.0 for v in (s.precision, s.recall, s.f1))


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: edge_scores(np.ones((2, 3)), [0, 1], np.ones((2, 2))),
            "feature_concept has 2 entries but weight has 3",
        ),
        (
            lambda: edge_scores(np.ones((2, 2)), [0, 2], np.ones((2, 2))),
            "feature_concept must be in -1..1",
        ),
        (
            lambda: edge_scores(np.ones((2, 2)), [0, -2], np.ones((2, 2))),
            "feature_concept must be in -1..1",
        ),
        (
            lambda: edge_scores(np.ones((2, 2)), [0, 1], np.ones((3, 2))),
            "class_concepts has 3 classes",
        ),
        (
            lambda: edge_scores(np.ones((2, 2)), [0, 1], [[0.5, 1], [1, 0]]),
            "class_concepts must be binary",
        ),
        (
            lambda: edge_scores(-np.ones((2, 2)), [0, 1], np.ones((2, 2))),
            "weight has no positive entry",
        ),
        (
            lambda: edge_scores(np.ones((2, 2)), [0, 1], np.zeros((2, 2))),
            "no true class → concept edge",
        ),
    ],
)
def test_edge_scores_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- the pointing game

# Images are 40 × 20 px, maps 2 × 4 cells: cell (i, j) covers 10 × 10 px and points at its
# centre (10j + 5, 10i + 5).
WIDTH, HEIGHT = 40, 20


def peak_map(row: int, col: int) -> np.ndarray:
    m = np.zeros((2, 4))
    m[row, col] = 1.0
    return m


def pointing_example():
    """Three features (concept 0, concept 1, unmatched), four images; the answer by hand."""
    maps = np.zeros((4, 3, 2, 4))
    annotations = []
    # image 0: f0 peaks at (15, 5), outside concept 0's box → miss; f1 at (35, 15) inside → hit
    maps[0, 0], maps[0, 1], maps[0, 2] = peak_map(0, 1), peak_map(1, 3), peak_map(0, 0)
    annotations.append([ConceptInstance(0, (0, 0, 12, 12)), ConceptInstance(1, (30, 10, 40, 20))])
    # image 1: f0 at (15, 5) inside (10..20, 0..10) → hit; concept 1 is only there occluded
    # → no trial for f1 (annotations may be plain tuples)
    maps[1, 0], maps[1, 1] = peak_map(0, 1), peak_map(0, 0)
    annotations.append([(0, (10, 0, 20, 10), True), (1, (0, 0, 40, 20), False)])
    # image 2: f0 at (5, 15) lies only in an occluded instance's box → miss;
    # f1's map is all zero (it did not fire) while concept 1 is visible → miss
    maps[2, 0] = peak_map(1, 0)
    annotations.append(
        [
            ConceptInstance(0, (0, 10, 10, 20), visible=False),
            ConceptInstance(0, (20, 0, 40, 20)),
            ConceptInstance(1, (0, 0, 40, 20)),
        ]
    )
    # image 3: no concept → no trial
    maps[3] = np.random.default_rng(0).random((3, 2, 4))
    annotations.append([])
    return maps, [0, 1, UNMATCHED], annotations


def test_pointing_game_by_hand():
    maps, feature_concept, annotations = pointing_example()
    result = pointing_game(
        maps, feature_concept, annotations, image_width=WIDTH, image_height=HEIGHT
    )
    assert result.trials.tolist() == [3, 2, 0]
    assert result.hits.tolist() == [1, 1, 0]
    assert result.overall == pytest.approx(2 / 5)
    np.testing.assert_allclose(result.per_feature, [1 / 3, 1 / 2, np.nan])
    assert result.feature_mean == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_pointing_game_box_edges_are_inclusive():
    # the peak cell (0, 1) points at (15, 5): exactly on the right edge of a box ending at x=15
    result = pointing_game(
        peak_map(0, 1)[None, None], [0], [[(0, (0, 0, 15, 5), True)]], WIDTH, HEIGHT
    )
    assert result.overall == 1.0


def test_pointing_game_streaming_equals_one_pass_and_serialises():
    maps, feature_concept, annotations = pointing_example()
    game = PointingGame(np.array(feature_concept), image_width=WIDTH, image_height=HEIGHT)
    game.update(torch.tensor(maps[:3], dtype=torch.float32), annotations[:3])
    game.update(maps[3:], annotations[3:])
    streamed = game.compute()
    once = pointing_game(maps, feature_concept, annotations, WIDTH, HEIGHT)
    assert streamed.to_dict() == once.to_dict()
    d = json.loads(json.dumps(streamed.to_dict(), allow_nan=False))
    assert d["per_feature"][2] is None and d["trials"] == [3, 2, 0]


def test_pointing_game_stays_in_range_on_random_maps():
    rng = np.random.default_rng(3)
    for trial in range(10):
        maps = rng.random((6, 4, 3, 3))
        annotations = [
            [
                (int(rng.integers(0, 3)), (x, y, x + 20, y + 20), bool(rng.random() < 0.8))
                for x, y in rng.integers(0, 40, (3, 2))
            ]
            for _ in range(6)
        ]
        game = PointingGame(rng.integers(-1, 3, 4), image_width=60, image_height=60)
        game.update(maps, annotations)
        if game.trials.sum() == 0:
            continue
        r = game.compute()
        assert 0.0 <= r.overall <= 1.0 and (r.hits <= r.trials).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda g: g.update(np.zeros((2, 3, 2, 4)), [[]]),
            "feature_maps has 2 rows but annotations has 1",
        ),
        (
            lambda g: g.update(np.zeros((1, 2, 2, 4)), [[]]),
            "2 maps per image but feature_concept has 3",
        ),
        (lambda g: g.update(np.zeros((1, 3, 8)), [[]]), r"feature_maps must be \[B, n, h, w\]"),
        (lambda g: g.update(np.full((1, 3, 2, 4), np.nan), [[]]), "feature_maps contains NaN"),
        (
            lambda g: g.update(np.zeros((1, 3, 2, 4)), [[(0, (5, 0, 1, 1), True)]]),
            r"annotations\[0\]\[0\]: box must be finite",
        ),
        (
            lambda g: g.update(np.zeros((1, 3, 2, 4)), [[(0, (0, 0, 1), True)]]),
            r"annotations\[0\]\[0\]: box must be finite",
        ),
        (
            lambda g: g.update(np.zeros((1, 3, 2, 4)), [[(-1, (0, 0, 1, 1), True)]]),
            "concept_id must be an integer >= 0",
        ),
        (
            lambda g: g.update(np.zeros((1, 3, 2, 4)), [[(0, (0, 0, 1, 1), "yes")]]),
            "visible must be a bool",
        ),
        (
            lambda g: g.update(np.zeros((1, 3, 2, 4)), [[(0, (0, 0, 1, 1))]]),
            r"annotations\[0\]\[0\] must be a ConceptInstance",
        ),
        (lambda g: g.compute(), "no trial"),
    ],
)
def test_pointing_game_rejects_bad_input(call, message):
    game = PointingGame([0, 1, UNMATCHED], image_width=WIDTH, image_height=HEIGHT)
    with pytest.raises(ValueError, match=message):
        call(game)


def test_pointing_game_accepts_any_record_with_the_three_fields():
    from types import SimpleNamespace

    record = SimpleNamespace(concept_id=0, box=(10, 0, 20, 10), visible=True, distractor=False)
    assert pointing_game(peak_map(0, 1)[None, None], [0], [[record]], WIDTH, HEIGHT).overall == 1.0


def test_pointing_game_batch_with_a_bad_annotation_counts_nothing():
    game = PointingGame([0], image_width=WIDTH, image_height=HEIGHT)
    maps = np.stack([peak_map(0, 0), peak_map(0, 0)])[:, None]
    with pytest.raises(ValueError, match=r"annotations\[1\]\[0\]"):
        game.update(maps, [[(0, (0, 0, 40, 20), True)], [(0, (9, 9, 1, 1), True)]])
    assert game.trials.tolist() == [0] and game.hits.tolist() == [0]


@pytest.mark.parametrize("width, height", [(0, 10), (10, -1), (True, 10)])
def test_pointing_game_rejects_bad_image_size(width, height):
    with pytest.raises(ValueError, match="must be a positive number of pixels"):
        PointingGame([0], image_width=width, image_height=height)


# ---------------------------------------------------------------- the bundle


def test_ground_truth_report_serialises_to_json():
    maps, feature_concept, annotations = pointing_example()
    present = np.array([[1, 1], [1, 0], [1, 1], [0, 0]])
    features = present[:, [0, 1, 0]] + np.array([0.0, 0.1, 0.2])
    report = GroundTruthReport(
        matching=match_features_to_concepts(features, present),
        edges=edge_scores([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], feature_concept, [[1, 0], [0, 1]]),
        pointing=pointing_game(maps, feature_concept, annotations, WIDTH, HEIGHT),
    )
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(d) == {"matching", "edges", "pointing"}
    assert d["matching"]["feature_concept"] == [0, 1, 0]
    assert d["edges"]["unmatched_edges"] == 1 and d["edges"]["recall"] == 1.0
    assert d["pointing"]["overall"] == pytest.approx(0.4)
