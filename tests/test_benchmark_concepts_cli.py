"""`python -m training benchmark-concepts` end to end (slow): two seeds of the tiny recipe, the
aggregate checked against the per-seed metrics each run wrote, then a rerun with another
redundancy weight that reuses the dense and statistics stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from recipes import TINY

from training.cli import main as training_main
from training.concept_benchmark import METRICS
from training.duplicate_concepts import duplicate_groups

pytestmark = pytest.mark.slow


def _bench(config: Path, out: Path, capsys, *extra: str) -> dict:
    argv = ["benchmark-concepts", "--config", str(config), "--seeds", "0", "1"]
    assert training_main([*argv, "--out", str(out), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_benchmark_aggregates_the_seeds_it_ran(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "bench"
    result = _bench(config, out, capsys)

    assert result["seeds"] == [0, 1]
    assert json.loads((out / "benchmark.json").read_text()) == result
    per_seed = result["per_seed"]
    for entry in per_seed:
        run = Path(entry["run"])
        assert run == out / f"seed-{entry['seed']}"
        assert json.loads((run / "fit_config.json").read_text())["seed"] == entry["seed"]
        recorded = json.loads((run / "model" / "metrics.json").read_text())
        for key, value in entry["metrics"].items():
            if key in recorded["metrics"]:
                assert value == recorded["metrics"][key], key
        assert entry["metrics"]["accuracy_ratio"] == pytest.approx(
            recorded["metrics"]["accuracy"] / recorded["metrics"]["dense_accuracy"]
        )
        # the duplicate count, recomputed from the run's assignment and matching
        weight = json.loads((run / "assignment" / "result.json").read_text())["weight"]
        matched = recorded["model"]["ground_truth"]["matching"]["feature_concept"]
        classes = {c for c, _, _ in duplicate_groups(np.array(weight), np.array(matched))}
        assert entry["metrics"]["duplicate_classes"] == len(classes)
        assert entry["duplicates"]["duplicate_classes"] == len(classes)
        assert 0 <= entry["metrics"]["missing_concepts"] <= TINY["data"]["concepts"]["pool_size"]
        assert (run / "concept_analysis" / "dense_auc.json").is_file()

    keys = {key for key, _ in METRICS}
    assert (
        {"accuracy", "concept_edge_f1", "duplicate_classes", "missing_concepts"}
        <= set(result["aggregate"])
        <= keys
    )
    for key, agg in result["aggregate"].items():
        values = [entry["metrics"][key] for entry in per_seed]
        assert agg["mean"] == pytest.approx(np.mean(values)), key
        assert agg["std"] == pytest.approx(np.std(values, ddof=1)), key
        assert (agg["min"], agg["max"], agg["count"]) == (min(values), max(values), 2)

    # another redundancy weight: only the assignment and what follows it run again
    records = {
        seed: {p.name: p.stat().st_mtime for p in (out / f"seed-{seed}" / "stages").iterdir()}
        for seed in (0, 1)
    }
    again = _bench(config, out, capsys, "--set", "assignment.redundancy_weight=25")
    for seed in (0, 1):
        after = {p.name: p.stat().st_mtime for p in (out / f"seed-{seed}" / "stages").iterdir()}
        changed = sorted(name for name in after if after[name] != records[seed][name])
        assert changed == ["assignment.json", "evaluate.json", "finetune.json"]
    assert {e["duplicates"]["redundancy_weight"] for e in again["per_seed"]} == {25.0}

    # the text report and its explanation
    argv = ["benchmark-concepts", "--config", str(config), "--seeds", "0", "1", "--out", str(out)]
    assert (
        training_main([*argv, "--set", "assignment.redundancy_weight=25", "--explain-duplicates"])
        == 0
    )
    text = capsys.readouterr().out
    assert "[1/2] seed 0:" in text and "[2/2] seed 1:" in text
    assert "concept edge F1" in text and "mean ± std" in text
    assert "== seed 0: duplicates" in text and "w_R = 25" in text
