"""Prediction sets (qpm_zoo.conformal, qpm_zoo.calibration, predict(coverage=...)): the coverage
guarantee on synthetic exchangeable data, the set explanation on a hand-made assignment, the
config record and its errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from qpm_zoo.calibration import LabelledLogits, calibrate_logits, score_function, with_calibration
from qpm_zoo.config import Calibration, CoverageTarget, QPMConfig
from qpm_zoo.conformal import (
    ScoreFunction,
    conformal_threshold,
    evaluate_sets,
    minimum_images,
    prediction_sets,
    softmax,
)
from qpm_zoo.errors import ConfigError, UncalibratedCoverageError, UsageError
from qpm_zoo.explain import GlobalExplainer


# -- the guarantee on a synthetic problem ----------------------------------------------------------
def _synthetic_logits(rng: np.random.Generator, n: int, classes: int = 10, lift: float = 0.0):
    """A noisy classifier: the true class's logit is raised by a random margin (plus `lift`),
    so some images are easy, some hard, and the scores are continuous (no ties). With lift 3
    it is about 99 % accurate, like the demo: more accurate than the targets."""
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += rng.gamma(2.0, 1.0, n) + lift
    return logits, labels


def _random_splits(rng, score, coverage, n_cal, lift=0.0, n_test=200, repeats=500):
    """4000 synthetic images' probabilities, labels and class scores, and `repeats` random
    calibration/test splits of them: (test indices, the threshold calibrated on the rest)."""
    logits, labels = _synthetic_logits(rng, 4000, lift=lift)
    p = softmax(logits)
    scores = score.class_scores(p)
    true = scores[np.arange(len(labels)), labels]
    splits = []
    for _ in range(repeats):
        order = rng.permutation(len(labels))
        cal, test = order[:n_cal], order[n_cal : n_cal + n_test]
        splits.append((test, conformal_threshold(true[cal], coverage)))
    return p, labels, scores, splits


@pytest.mark.parametrize("name", ["lac", "aps", "raps"])
@pytest.mark.parametrize("coverage", [0.9, 0.95])
def test_returned_sets_cover_the_target_over_many_random_splits(name, coverage):
    """500 random calibration/test splits of exchangeable images: the sets `prediction_sets`
    returns (what `predict` returns by default, empty ones included) cover at least the target
    on average (up to the Monte-Carlo error) and, for LAC's continuous scores, at most
    1 − α + 1/(n + 1), the finite-sample upper bound."""
    rng = np.random.default_rng(0)
    score = ScoreFunction(name, raps_lambda=0.05, raps_k_reg=2)
    n_cal = 200
    p, labels, scores, splits = _random_splits(rng, score, coverage, n_cal)
    covered, filled_covered, empty = [], [], []
    for test, q in splits:
        sets, filled = prediction_sets(scores[test], p[test], q)
        assert not filled.any()  # without never_empty nothing is put in
        covered.append(np.mean([labels[i] in s for i, s in zip(test, sets)]))
        empty.append(np.mean([not s for s in sets]))
        sets, _ = prediction_sets(scores[test], p[test], q, never_empty=True)
        filled_covered.append(np.mean([labels[i] in s for i, s in zip(test, sets)]))
    mean = float(np.mean(covered))
    # over 500 repeats the Monte-Carlo standard error of the mean is about 0.001
    assert mean >= coverage - 0.005
    if name == "lac":
        assert mean <= coverage + 1 / (n_cal + 1) + 0.005
    else:
        assert np.mean(empty) == 0  # APS/RAPS: the top class scores 0, so it is in every set
    # never-empty sets only add coverage
    assert all(f >= c for f, c in zip(filled_covered, covered))


@pytest.mark.parametrize("coverage", [0.9, 0.95])
def test_a_model_more_accurate_than_the_target_gets_empty_sets_and_the_target(coverage):
    """The demo's situation: a 99 %-accurate classifier. LAC's returned sets, empty ones
    included, cover between the target and 1 − α + 1/(n + 1) on average over 500 splits; about
    1 − α − (1 − accuracy) of them are empty. Filling them with the top class (never_empty)
    covers as often as the model is right, far above the target: why it is only an opt-in."""
    score = ScoreFunction("lac")
    n_cal = 200
    p, labels, _, splits = _random_splits(np.random.default_rng(4), score, coverage, n_cal, 3.0)
    accuracy = float(np.mean(p.argmax(axis=1) == labels))
    assert accuracy > coverage + 0.03
    covered, filled_covered, empty = [], [], []
    for test, q in splits:
        e = evaluate_sets(p[test], labels[test], score, q, coverage)
        covered.append(e.empirical_coverage)
        empty.append(e.empty_share)
        filled = evaluate_sets(p[test], labels[test], score, q, coverage, never_empty=True)
        filled_covered.append(filled.empirical_coverage)
    mean = float(np.mean(covered))
    assert coverage - 0.005 <= mean <= coverage + 1 / (n_cal + 1) + 0.005
    assert np.mean(empty) > (1 - coverage) / 2  # empty sets are what brings it to the target
    assert np.mean(filled_covered) > coverage + 1 / (n_cal + 1) + 0.01
    assert np.mean(filled_covered) == pytest.approx(accuracy, abs=0.01)


def test_threshold_is_the_conformal_quantile_and_needs_enough_images():
    scores = np.arange(1, 20) / 20  # 19 scores 0.05 .. 0.95
    # n = 19, coverage 0.9: the ⌈20 · 0.9⌉ = 18th smallest
    assert conformal_threshold(scores, 0.9) == pytest.approx(0.9)
    assert minimum_images(0.9) == 9 and minimum_images(0.95) == 19
    with pytest.raises(UsageError, match="8 calibration images cannot calibrate a coverage of 0.9"):
        conformal_threshold(scores[:8], 0.9)
    for bad in (0.0, 1.0, 1.5, True):
        with pytest.raises(UsageError, match="coverage must be"):
            conformal_threshold(scores, bad)


def test_scores_aps_is_cumulative_mass_and_raps_adds_its_rank_penalty():
    p = np.array([[0.1, 0.6, 0.3]])
    assert ScoreFunction("lac").class_scores(p)[0] == pytest.approx([0.9, 0.4, 0.7])
    assert ScoreFunction("aps").class_scores(p)[0] == pytest.approx([0.9, 0.0, 0.6])
    raps = ScoreFunction("raps", raps_lambda=0.5, raps_k_reg=1)
    assert raps.class_scores(p)[0] == pytest.approx([1.9, 0.0, 1.1])
    with pytest.raises(UsageError, match="score must be one of lac, aps, raps"):
        ScoreFunction("thr")


def test_an_empty_set_stays_empty_unless_never_empty_puts_the_top_class_in():
    p = np.array([[0.98, 0.01, 0.01], [0.5, 0.45, 0.05]])
    scores = ScoreFunction("lac").class_scores(p)
    sets, filled = prediction_sets(scores, p, threshold=0.01)  # 1 − 0.98 = 0.02 > 0.01
    assert sets == [(), ()] and not filled.any()
    sets, filled = prediction_sets(scores, p, threshold=0.01, never_empty=True)
    assert sets == [(0,), (0,)] and filled.tolist() == [True, True]
    sets, filled = prediction_sets(scores, p, threshold=0.6, never_empty=True)
    assert sets == [(0,), (0, 1)] and not filled.any()

    e = evaluate_sets(p, np.array([0, 1]), ScoreFunction("lac"), 0.01, 0.9)
    assert e.empirical_coverage == 0.0 and e.empty_share == 1.0 and e.mean_size == 0.0
    assert e.worst_class == 0 and e.worst_class_coverage == 0.0 and not e.never_empty
    # the opt-in: the top class in both sets, which only raises coverage (to the accuracy, 1/2)
    e = evaluate_sets(p, np.array([0, 1]), ScoreFunction("lac"), 0.01, 0.9, never_empty=True)
    assert e.empirical_coverage == 0.5 and e.empty_share == 1.0 and e.mean_size == 1.0
    assert e.worst_class == 1 and e.worst_class_coverage == 0.0 and e.never_empty


# -- the record in config.json -----------------------------------------------------------------
def test_calibration_record_round_trips_and_old_configs_load_unchanged(qpm_dir, tmp_path):
    rng = np.random.default_rng(1)
    logits, labels = _synthetic_logits(rng, 300, classes=5)
    cal = LabelledLogits(logits[:200], labels[:200], "val (test fixture)")
    test = LabelledLogits(logits[200:], labels[200:], "test")
    names = ["a", "b", "c", "d", "e"]
    record, evaluations = calibrate_logits(cal, [0.95, 0.9], score_function("raps"), names, test)
    assert record.coverages == (0.9, 0.95) and record.images == 200 and record.test_images == 100
    assert record.raps_lambda == 0.01 and record.raps_k_reg == 5
    assert [e.coverage for e in evaluations] == [0.9, 0.95]
    assert record.targets[0].test_worst_class in names

    folder = tmp_path / "model"
    shutil.copytree(qpm_dir, folder)
    before = json.loads((folder / "config.json").read_text())
    assert "calibration" not in before  # an old checkpoint has none, and loads as it is
    assert QPMConfig.load(folder / "config.json").calibration is None
    files = sorted(p.name for p in folder.iterdir())
    with_calibration(folder, record)
    assert sorted(p.name for p in folder.iterdir()) == files  # weights and the rest kept
    loaded = QPMConfig.load(folder / "config.json")
    assert loaded.calibration == record
    assert loaded.coverage_target(0.9).threshold == record.targets[0].threshold
    written = json.loads((folder / "config.json").read_text())["calibration"]
    assert written["method"] == "split_conformal" and written["score"] == "raps"
    assert "test_coverage" in written["targets"][0] and "test_empty_share" in written["targets"][0]


def test_calibration_record_refuses_inconsistent_files(qpm_dir):
    data = json.loads((qpm_dir / "config.json").read_text())
    good = {
        "score": "lac",
        "images": 100,
        "split": "val",
        "targets": [{"coverage": 0.9, "threshold": 0.4}],
    }
    QPMConfig.from_dict({**data, "calibration": good})
    bad = [
        ({**good, "targets": []}, "calibration.targets: must hold at least one"),
        ({**good, "targets": [{"coverage": 1.0, "threshold": 0.4}]}, "coverage: must be between"),
        ({**good, "score": "aps", "raps_lambda": 0.1, "raps_k_reg": 2}, "raps_lambda"),
        ({**good, "images": 0}, "calibration.images"),
        ({**good, "extra": 1}, r"unknown field\(s\) \['extra'\] in 'calibration'"),
    ]
    for entry, message in bad:
        with pytest.raises(ConfigError, match=message):
            QPMConfig.from_dict({**data, "calibration": entry})


def test_an_uncalibrated_coverage_says_what_is_calibrated_and_how_to_calibrate(qpm_dir):
    config = QPMConfig.load(qpm_dir / "config.json")
    with pytest.raises(UncalibratedCoverageError, match="the model is not calibrated") as e:
        config.coverage_target(0.9)
    assert "python -m training calibrate MODEL_DIR --split val --coverage 0.9" in str(e.value)
    calibrated = config.replace(
        calibration=Calibration(
            score="lac",
            images=50,
            split="val",
            targets=(CoverageTarget(coverage=0.9, threshold=0.5),),
        )
    )
    assert calibrated.coverage_target(0.9).threshold == 0.5
    with pytest.raises(
        UncalibratedCoverageError, match=r"calibrated for 0.9 only.*--coverage 0.9 0.95"
    ):
        calibrated.coverage_target(0.95)


# -- the set's explanation -----------------------------------------------------------------------
def _hand_made(model_type: str = "qpm") -> GlobalExplainer:
    """Four classes on six features:
    A: 0 1 2      B: 0 1 3      C: 0 4 5      D: 1 2 3"""
    weight = np.zeros((4, 6), np.float32)
    for c, row in enumerate([(0, 1, 2), (0, 1, 3), (0, 4, 5), (1, 2, 3)]):
        weight[c, list(row)] = 1.0
    from qpm_zoo.config import Assignment, BackboneConfig, PreprocessConfig

    bias = None
    if model_type == "qsenn":
        weight[1, 1] = -1.0  # B uses feature 1 against the class
        bias = np.zeros(4)
    config = QPMConfig(
        model_type=model_type,
        backbone=BackboneConfig(name="test_resnet", num_features=8),
        num_classes=4,
        label_names=("A", "B", "C", "D"),
        selected_features=(0, 1, 2, 3, 4, 5),
        k=3,
        assignment=Assignment.from_matrix(weight, bias),
        preprocessing=PreprocessConfig(),
    )
    return GlobalExplainer(config)


def test_set_explanation_shares_what_all_members_use_and_lists_the_rest_per_member():
    model = _hand_made()
    two = model.compare_set(["A", "B"])
    pair = model.compare("A", "B")
    # for two classes it is `compare`: shared, only A, only B
    assert [f.index for f in two.shared] == [f.index for f in pair.shared] == [0, 1]
    assert [f.index for f in two.members[0].distinguishing] == [f.index for f in pair.only_a]
    assert [f.index for f in two.members[1].distinguishing] == [f.index for f in pair.only_b]

    three = model.compare_set(["A", "B", "D"])
    assert three.labels == ("A", "B", "D")
    assert [f.index for f in three.shared] == [1]
    assert [[f.index for f in m.distinguishing] for m in three.members] == [[0, 2], [0, 3], [2, 3]]
    # each feature carries every member's weight (0 where the member does not use it)
    assert three.members[0].distinguishing[0].weights == (1.0, 1.0, 0.0)

    assert [f.index for f in model.compare_set(["A", "B", "C", "D"]).shared] == []
    alone = model.compare_set("C")
    assert [f.index for f in alone.shared] == [0, 4, 5] and alone.members[0].distinguishing == ()
    with pytest.raises(Exception, match="got a class twice"):
        model.compare_set(["A", "A"])


def test_signed_weights_share_a_feature_only_with_one_sign():
    model = _hand_made("qsenn")
    s = model.compare_set(["A", "B"])
    # B weighs feature 1 with −1, A with +1: evidence for A, against B, so it sets both apart
    assert [f.index for f in s.shared] == [0]
    assert [f.index for f in s.members[0].distinguishing] == [1, 2]
    assert [f.index for f in s.members[1].distinguishing] == [1, 3]
    assert s.members[1].distinguishing[0].weights == (1.0, -1.0)


# -- predict(coverage=...) -----------------------------------------------------------------------
def _calibrated_copy(source, folder, coverages=(0.8, 0.9), score="lac", images=None):
    """A copy of a test checkpoint calibrated on random labelled images."""
    from qpm_zoo.model import QPM

    shutil.copytree(source, folder)
    model = QPM.from_pretrained(folder)
    rng = np.random.default_rng(5)
    images = images or [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(30)]
    labels = rng.integers(0, model.config.num_classes, len(images))
    held_out = LabelledLogits(model.predict_logits(images), labels, "random images")
    record, _ = calibrate_logits(held_out, coverages, score_function(score), model.label_names)
    with_calibration(folder, record)
    return folder


def test_predict_with_a_coverage_returns_the_explained_set(qpm_dir, image_file, tmp_path):
    from qpm_zoo.model import QPM

    folder = _calibrated_copy(qpm_dir, tmp_path / "model")
    model = QPM.from_pretrained(folder)
    plain = model.predict(str(image_file))
    assert plain.prediction_set is None and "prediction_set" not in plain.to_dict()
    pred = model.predict(str(image_file), coverage=0.9)
    s = pred.prediction_set
    assert s.coverage == 0.9 and s.score == "lac"
    z = np.asarray([score.logit for score in model.predict(str(image_file), top_k=5).top_k])
    p = softmax(z)
    expected = [
        lab.label
        for lab, q in zip(model.predict(str(image_file), top_k=5).top_k, p)
        if 1 - q <= s.threshold
    ] or [pred.label]
    assert list(s.labels) == expected
    assert s.labels[0] == pred.label  # most probable first
    probs = [m.probability for m in s.explanation.members]
    assert probs == sorted(probs, reverse=True)
    members = [m.index for m in s.explanation.members]
    # shared and distinguishing are those of the global set comparison, with activations
    global_set = model.compare_set(members)
    assert [f.index for f in s.explanation.shared] == [f.index for f in global_set.shared]
    for mine, theirs in zip(s.explanation.members, global_set.members):
        assert sorted(f.index for f in mine.distinguishing) == [
            f.index for f in theirs.distinguishing
        ]
    assert all(f.activation is not None for f in s.explanation.shared)
    data = pred.to_dict()
    assert data["prediction_set"]["labels"] == list(s.labels)
    json.dumps(data, allow_nan=False)

    with pytest.raises(UncalibratedCoverageError, match="calibrated for 0.8, 0.9 only"):
        model.predict(str(image_file), coverage=0.95)
    uncalibrated = QPM.from_pretrained(qpm_dir)
    with pytest.raises(UncalibratedCoverageError, match="python -m training calibrate"):
        uncalibrated.predict(str(image_file), coverage=0.9)
    with pytest.raises(UsageError, match="coverage must be between 0 and 1"):
        model.predict(str(image_file), coverage=90)


def _all_empty_copy(model_dir, folder):
    """A copy of a checkpoint whose 90 % LAC threshold is 0, so every set is empty (a model
    more sure of every image than of any calibration image)."""
    shutil.copytree(model_dir, folder)
    record = Calibration(
        score="lac",
        images=99,
        split="hand-made",
        targets=(CoverageTarget(coverage=0.9, threshold=0.0),),
    )
    with_calibration(folder, record)
    return folder


def test_predict_returns_an_empty_set_and_never_empty_fills_it(qpm_dir, image_file, tmp_path):
    """A threshold below 1 − p(top) (a model more sure of this image than of any calibration
    image) gives the empty conformal set, explained as one (no members, nothing shared) and
    shown as one in text and JSON; `never_empty=True` gives the top class alone, marked."""
    from qpm_zoo.formatting import format_prediction
    from qpm_zoo.model import QPM

    model = QPM.from_pretrained(_all_empty_copy(qpm_dir, tmp_path / "model"))
    pred = model.predict(str(image_file), coverage=0.9)
    s = pred.prediction_set
    assert s.empty and s.labels == () and s.indices == () and not s.filled
    assert s.explanation.shared == () and s.explanation.members == ()
    assert pred.label in model.label_names  # the top-1 prediction is there as always
    out = pred.to_dict()["prediction_set"]
    assert out["empty"] is True and out["labels"] == [] and out["filled"] is False
    json.dumps(out)
    assert "empty set at 90% (lac)" in format_prediction(pred)

    filled = model.predict(str(image_file), coverage=0.9, never_empty=True).prediction_set
    assert filled.labels == (pred.label,) and filled.filled and not filled.empty
    assert "--never-empty put the top class in" in format_prediction(
        model.predict(str(image_file), coverage=0.9, never_empty=True)
    )
    with pytest.raises(UsageError, match="never_empty applies to prediction sets"):
        model.predict(str(image_file), never_empty=True)


def test_qsenn_sets_use_signed_weights(qsenn_dir, image_file, tmp_path):
    from qpm_zoo.model import QPM

    folder = _calibrated_copy(qsenn_dir, tmp_path / "model", coverages=(0.9,), score="aps")
    model = QPM.from_pretrained(folder)
    s = model.predict(str(image_file), coverage=0.9).prediction_set
    assert s.score == "aps"
    weights = model.class_weights[list(s.indices)]
    for f in s.explanation.shared:
        assert np.all(weights[:, f.index] != 0)
        assert len(set(np.sign(weights[:, f.index]))) == 1
    assert math.isfinite(s.threshold)
