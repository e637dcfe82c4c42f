"""The known-concept benchmark's arithmetic: duplicate and missing concepts, the aggregate, and the
duplicate report's numbers against the assignment problem they are read from."""

from __future__ import annotations

import numpy as np
import pytest
from recipes import TINY

from training.concept_benchmark import Aggregate, SeedResult, aggregate, seed_config, seed_configs
from training.config import FitConfig
from training.duplicate_concepts import (
    DuplicateReport,
    duplicate_groups,
    explain_duplicates,
    missing_concepts,
)
from training.errors import FitConfigError
from training.metrics import UNMATCHED
from training.solver.oracle import SelectionOracle
from training.solver.problem import AssignmentProblem


def test_duplicate_groups_and_missing_concepts():
    weight = np.array([[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 1, 1]])
    feature_concept = np.array([0, 0, 2, UNMATCHED])
    # class 0 uses features 0 and 1, both matched to concept 0; the unmatched feature 3 is no
    # concept, so it never makes a duplicate
    assert duplicate_groups(weight, feature_concept) == [(0, 0, [0, 1])]
    truth = np.zeros((3, 5), dtype=bool)
    truth[:, [0, 1, 2]] = True  # concept 3 and 4 belong to no class: not "missing"
    assert missing_concepts(feature_concept, truth) == [1]


def test_aggregate_is_mean_and_sample_std_over_seeds():
    def seed(i, f1):
        empty = DuplicateReport(20.0, 1.0, 1.0, 0.5, 3, 1.0, 0, (), ())
        return SeedResult(i, f"run{i}", {"concept_edge_f1": f1, "accuracy": 0.9}, empty)

    result = aggregate([seed(0, 0.8), seed(1, 0.9), seed(2, 1.0)])
    assert result["concept_edge_f1"].mean == pytest.approx(0.9)
    assert result["concept_edge_f1"].std == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert (result["concept_edge_f1"].min, result["concept_edge_f1"].max) == (0.8, 1.0)
    assert "pointing_game" not in result  # no seed has it: left out, not averaged
    assert Aggregate.of([0.5]).std == 0.0


def _instance():
    """6 channels, 3 classes, n = 4, k = 2: channels 0 and 1 both detect concept 0 (classes 0
    and 1), channel 5 is the only good detector of concept 3 (class 2)."""
    A = np.array(
        [
            [1.0, 0.9, 0.0],
            [0.95, 0.85, 0.0],
            [0.6, 0.0, 0.5],
            [0.0, 0.7, 0.6],
            [0.0, 0.0, 0.1],
            [0.0, 0.2, 0.45],
        ]
    )
    rows = A / np.linalg.norm(A, axis=1, keepdims=True)
    R = np.triu(rows @ rows.T, 1)
    R = R / R.max()
    b = np.zeros(6)
    return A, R, b


def test_duplicate_report_reads_the_assignment_problem():
    A, R, b = _instance()
    selected = np.array([0, 1, 2, 3])
    problem = AssignmentProblem.build(A, R, b, 4, 2)
    best = SelectionOracle(problem)(selected)
    feature_concept = np.array([0, 0, 1, 2])
    feature_auc = np.full((4, 4), 0.5)
    feature_auc[[0, 1, 2, 3], [0, 0, 1, 2]] = [0.99, 0.95, 0.9, 0.9]
    dense_auc = np.full((6, 4), 0.5)
    dense_auc[5, 3] = 0.97
    truth = np.zeros((3, 4), dtype=bool)
    truth[0, [0, 1]] = truth[1, [0, 2]] = truth[2, [1, 3]] = True
    assignment = {
        "selected": selected.tolist(),
        "weight": best.weight.tolist(),
        "threshold": {"tau": problem.threshold.tau},
        "redundancy_weight": 1.0,
    }
    report = explain_duplicates(
        A=A,
        R=R,
        b=b,
        assignment=assignment,
        feature_concept=feature_concept,
        feature_auc=feature_auc,
        class_concepts=truth,
        class_names=["a", "b", "c"],
        concept_names=("k0", "k1", "k2", "k3"),
        dense_auc=dense_auc,
    )
    assert report.alpha == pytest.approx(1000 / (2 * 3))
    dup_classes = {c for c, row in enumerate(best.weight) if row[0] and row[1]}
    assert report.duplicate_classes == len(dup_classes) > 0
    for pair in report.pairs:
        assert pair.channels == (0, 1) and pair.auc == (0.99, 0.95)
        assert pair.redundancy == pytest.approx(R[0, 1])
        assert pair.penalised == (R[0, 1] >= problem.threshold.tau)
        assert pair.penalty == pytest.approx(problem.penalty[0, 1])
        c = pair.class_index
        assert pair.similarity == pytest.approx((report.alpha * A[0, c], report.alpha * A[1, c]))
    (missing,) = report.missing
    assert (missing.concept, missing.dense_channel, missing.dense_auc) == (3, 5, 0.97)
    assert missing.classes == (2,) and not missing.dense_channel_selected
    assert missing.swap_out == 1
    # the break-even weight is where the swap's objective overtakes the current one
    swapped = [0, 2, 3, 5]
    for factor, better in ((0.9, False), (1.1, True)):
        weighted = AssignmentProblem.build(
            A,
            R,
            b,
            4,
            2,
            tau=problem.threshold.tau,
            redundancy_weight=factor * missing.break_even_weight,
        )
        oracle = SelectionOracle(weighted)
        assert (oracle(swapped).value > oracle(selected).value) == better


def test_seed_config_changes_only_the_seed_and_needs_known_concepts():
    config = FitConfig.from_dict(TINY)
    other = seed_config(config, 7)
    assert other.seed == 7 and other.to_dict() == {**config.to_dict(), "seed": 7}
    fmnist = FitConfig.from_dict({**TINY, "data": {"name": "fashion_mnist"}})
    with pytest.raises(FitConfigError, match="known-concept data"):
        seed_configs(fmnist, [0, 1])
    with pytest.raises(FitConfigError, match="given twice"):
        seed_configs(config, [0, 1, 0])
    with pytest.raises(FitConfigError, match="seed must be an integer >= 0"):
        seed_config(config, -1)


def test_sweep_never_selects_a_dead_feature():
    """The sweep solves as the assignment stage does: a channel with σ = 0 (here channel 0, the
    best one by A) is never selected, and the selection is reported in dense indices."""
    from training.duplicate_concepts import sweep_redundancy_weight

    A, R, b = _instance()
    std = np.ones(6)
    std[0] = 0.0
    truth = np.zeros((3, 4), dtype=bool)
    truth[0, [0, 1]] = truth[1, [0, 2]] = truth[2, [1, 3]] = True
    (point,) = sweep_redundancy_weight(
        A,
        R,
        b,
        std,
        4,
        2,
        weights=[1.0],
        dense_auc=np.full((6, 4), 0.5),
        class_concepts=truth,
        time_limit=10,
    )
    assert 0 not in point.selected and len(set(point.selected)) == 4
    assert set(point.selected) <= set(range(1, 6))


def test_sweep_scores_each_weight_through_the_dense_matching():
    from training.commands.benchmark_concepts import sweep_text
    from training.duplicate_concepts import sweep_redundancy_weight
    from training.metrics import edge_scores

    A, R, b = _instance()
    dense_auc = np.full((6, 4), 0.5)
    dense_auc[[0, 1, 2, 3, 4, 5], [0, 0, 1, 2, 1, 3]] = 0.99
    truth = np.zeros((3, 4), dtype=bool)
    truth[0, [0, 1]] = truth[1, [0, 2]] = truth[2, [1, 3]] = True
    points = sweep_redundancy_weight(
        A,
        R,
        b,
        np.ones(6),
        4,
        2,
        weights=[0.0, 1.0, 1000.0],
        dense_auc=dense_auc,
        class_concepts=truth,
        time_limit=10,
    )
    assert [p.redundancy_weight for p in points] == [0.0, 1.0, 1000.0]
    for p in points:
        selected = np.array(p.selected)
        problem = AssignmentProblem.build(A, R, b, 4, 2)
        best = SelectionOracle(problem)(selected)
        assert p.z_r == pytest.approx(best.terms.z_r)  # unweighted, also at w_R = 0
        scores = edge_scores(best.weight, np.argmax(dense_auc[selected], axis=1), truth)
        assert p.edge_f1 == pytest.approx(scores.f1)
    # a larger weight never buys more redundancy, and pays for it in similarity
    assert points[0].z_r >= points[1].z_r >= points[2].z_r
    assert points[0].z_a >= points[2].z_a
    empty = DuplicateReport(1.0, 1.0, 1.0, 0.5, 0, 0.0, 0, (), ())
    table = sweep_text([SeedResult(0, "run", {}, empty, tuple(points))])
    assert "w_R" in table and "1000" in table
