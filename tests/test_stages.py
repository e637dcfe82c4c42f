"""Stage caching (reuse what finished, rerun from the first stage a changed field affects) and
the typed stage results and run-folder files it caches."""

from __future__ import annotations

import json

import pytest

from training.stage_cache import Stage, StageRunner


class Recorder:
    def __init__(self, root, config):
        self.root = root
        self.config = config
        self.calls: list[str] = []

    def stage(self, name, sections, fail=False, outputs=()):
        def run():
            self.calls.append(name)
            (self.root / name / "result.txt").write_text(name)
            if fail:
                raise KeyboardInterrupt
            return {"value": len(self.calls)}

        return Stage(name, sections, run, outputs)

    def stages(self, fail_at=None):
        return [
            self.stage("a", ("x",), fail=fail_at == "a"),
            self.stage("b", ("y",), fail=fail_at == "b"),
            self.stage("c", ("z",), fail=fail_at == "c", outputs=("model",)),
        ]

    def runner(self):
        return StageRunner(
            self.root, lambda sections: json.dumps({s: self.config[s] for s in sections})
        )


@pytest.fixture
def rec(tmp_path):
    return Recorder(tmp_path, {"x": 1, "y": 1, "z": 1})


def test_second_run_reuses_everything(rec):
    rec.runner().run(rec.stages())
    summaries = rec.runner().run(rec.stages())
    assert rec.calls == ["a", "b", "c"]
    assert summaries == {"a": {"value": 1}, "b": {"value": 2}, "c": {"value": 3}}


def test_changed_field_reruns_from_its_stage(rec):
    rec.runner().run(rec.stages())
    (rec.root / "model").mkdir()
    rec.config["y"] = 2
    runner = rec.runner()
    assert runner.status(rec.stages()) == {"a": "done", "b": "stale", "c": "stale"}
    runner.run(rec.stages())
    assert rec.calls == ["a", "b", "c", "b", "c"]
    assert not (rec.root / "model").exists()  # c's output was removed when it became stale


def test_interruption_keeps_finished_stages_and_partial_work(rec):
    with pytest.raises(KeyboardInterrupt):
        rec.runner().run(rec.stages(fail_at="b"))
    assert (rec.root / "stages" / "a.json").exists()
    assert not (rec.root / "stages" / "b.json").exists()
    assert (rec.root / "b" / "result.txt").exists()  # partial work stays for a resume
    rec.runner().run(rec.stages())
    assert rec.calls == ["a", "b", "b", "c"]


def test_partial_work_from_another_config_is_discarded(rec):
    with pytest.raises(KeyboardInterrupt):
        rec.runner().run(rec.stages(fail_at="b"))
    (rec.root / "b" / "stale-partial").write_text("old")
    rec.config["y"] = 5
    rec.runner().run(rec.stages())
    assert not (rec.root / "b" / "stale-partial").exists()


def test_damaged_record_counts_as_unfinished(rec):
    rec.runner().run(rec.stages())
    (rec.root / "stages" / "c.json").write_text("{not json")
    rec.runner().run(rec.stages())
    assert rec.calls == ["a", "b", "c", "c"]


def test_assignment_result_round_trips_through_its_folder(tmp_path):
    from training.stages import SolvedAssignment

    report = {
        "selected": [1, 4, 7],
        "weight": [[1, 1, 0], [0, 1, 1]],
        "objective": 1.25,
        "objective_terms": {"z_a": 1.0, "z_b": 0.5, "z_r": 0.25},
        "bound": 1.3,
        "gap": 0.04,
        "status": "time_limit",
        "wall_s": 2.5,
        "checks": {"k_per_class": True},
        "details": {"nodes": 3},
    }
    solved = SolvedAssignment.from_report(report)
    assert solved.selected.tolist() == [1, 4, 7] and solved.weight.shape == (2, 3)
    solved.save(tmp_path)
    again = SolvedAssignment.load(tmp_path)
    assert again.to_report() == report
    assert again.weight.tolist() == solved.weight.tolist() and again.status == "time_limit"


def test_summaries_read_back_from_records():
    from training.stages import DenseSummary, EvaluationSummary

    dense = DenseSummary(test_accuracy=0.75, epochs=3)
    assert DenseSummary.from_dict({**dense.to_dict(), "later_field": 1}) == dense
    metrics = {"accuracy": 0.5, "dense_accuracy": 0.7}
    assert EvaluationSummary(metrics).to_dict() == metrics  # the record is the metrics mapping


def test_run_folder_keeps_its_fit_config_apart_from_the_checkpoint(tmp_path):
    from training.config import FitConfig
    from training.pipeline import FIT_CONFIG_NAME, FitRun

    config = FitConfig.from_dict(
        {"data": {"name": "concepts"}, "model": {"backbone": "test_resnet", "input_size": 32}}
    )
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))  # older code's name
    path = FitRun(config, tmp_path).record_config()
    assert path.name == FIT_CONFIG_NAME != "config.json"
    assert not (tmp_path / "config.json").exists()
    assert FitConfig.from_dict(json.loads(path.read_text())).to_dict() == config.to_dict()


def _statistics_with_dead_features(tmp_path, dead: list[int], features: int = 12, classes: int = 4):
    """A statistics file whose `dead` features never vary but carry the largest locality bias,
    so a solver that saw them would pick them first."""
    import numpy as np

    from training.statistics import AssignmentStatistics

    rng = np.random.default_rng(0)
    A = rng.random((features, classes))
    R = np.triu(rng.random((features, features)) * 0.1, 1)
    b = rng.random(features) * 0.1
    std = rng.random(features) + 0.5
    A[dead], b[dead], std[dead] = 0.0, 10.0, 0.0
    folder = tmp_path / "statistics"
    folder.mkdir(parents=True)
    AssignmentStatistics(A=A, R=R, b=b, mean=np.zeros(features), std=std, num_samples=100).save(
        folder / "stats.npz"
    )


def _assignment_context(
    tmp_path, n: int, k: int = 2, redundancy: str = "class_similarity", weight: float = 1.0
):
    from types import SimpleNamespace

    section = SimpleNamespace(
        n=n, k=k, time_limit=10.0, mip_gap=0.0, redundancy_weight=weight, redundancy=redundancy
    )
    return SimpleNamespace(
        config=SimpleNamespace(assignment=section, seed=0),
        work_dir=lambda stage: tmp_path / stage,
    )


def test_the_assignment_never_selects_a_dead_feature(tmp_path):
    from training.stages.assignment import _solve_and_save, load_assignment

    dead = [0, 3, 5]
    _statistics_with_dead_features(tmp_path, dead)
    ctx = _assignment_context(tmp_path, n=5)
    solved = _solve_and_save(ctx)
    assert len(solved.selected) == 5 and not set(solved.selected.tolist()) & set(dead)
    assert solved.solver["dead_features"] == 3 and all(solved.checks.values())
    assert load_assignment(ctx).selected.tolist() == solved.selected.tolist()  # dense indices


def test_the_assignment_reads_the_redundancy_it_is_told(tmp_path):
    """Features 1 and 2 fit every class best; only the within-class matrix calls them
    redundant, so only with `assignment.redundancy: within_class` are they not both chosen."""
    import numpy as np

    from training.stages.assignment import _solve_and_save
    from training.statistics import AssignmentStatistics

    rng = np.random.default_rng(1)
    A = rng.random((12, 4)) * 0.3
    A[[1, 2]] = 1.0
    within = np.zeros((12, 12))
    within[1, 2] = 1.0
    folder = tmp_path / "statistics"
    folder.mkdir()
    stats = AssignmentStatistics(
        A=A, R=np.zeros((12, 12)), b=np.zeros(12), mean=np.zeros(12), std=np.ones(12),
        num_samples=100, R_within=within,
    )  # fmt: skip
    stats.save(folder / "stats.npz")
    paper = _solve_and_save(_assignment_context(tmp_path, n=5, weight=1000.0))
    assert {1, 2} <= set(paper.selected.tolist())
    ours = _solve_and_save(
        _assignment_context(tmp_path, 5, redundancy="within_class", weight=1000.0)
    )
    assert len({1, 2} & set(ours.selected.tolist())) == 1 and all(ours.checks.values())


def test_within_class_redundancy_from_older_statistics_is_one_line(tmp_path):
    from training.errors import FitConfigError
    from training.stages.assignment import _solve_and_save

    _statistics_with_dead_features(tmp_path, dead=[])  # written without R_within
    with pytest.raises(FitConfigError, match=r"assignment.redundancy = within_class: .* delete"):
        _solve_and_save(_assignment_context(tmp_path, n=5, redundancy="within_class"))


def test_too_few_live_features_for_n_is_one_line(tmp_path):
    from training.errors import FitConfigError
    from training.stages.assignment import _solve_and_save

    _statistics_with_dead_features(tmp_path, dead=list(range(8)))
    with pytest.raises(
        FitConfigError, match=r"assignment.n = 5, but only 4 of the dense model's 12"
    ):
        _solve_and_save(_assignment_context(tmp_path, n=5))
