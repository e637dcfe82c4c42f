"""The metrics timing script runs end to end (on tiny sizes here; real sizes are its default)."""

from __future__ import annotations

import json

from training.cli import main


def test_bench_times_every_metric(capsys):
    argv = [
        "metrics-bench",
        "--train-images",
        "40",
        "--test-images",
        "30",
        "--classes",
        "6",
        "--features",
        "8",
    ]
    argv += ["--k", "2", "--map-size", "4", "--dense-features", "12", "--concepts", "3", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 11
    assert all(r["seconds"] >= 0 and isinstance(r["value"], float) for r in rows)
