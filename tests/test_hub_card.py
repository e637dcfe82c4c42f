"""The model card: MODEL_CARD.md filled from config.json, valid for huggingface_hub's ModelCard."""

from __future__ import annotations

import re
import shlex
import string
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from conftest import make_model
from huggingface_hub import ModelCard
from test_torch_free import run_without_torch

from qpm_zoo import GlobalExplainer, QPMConfig, QPMError
from qpm_zoo.card import README_NAME, CardFields, load_template, render_model_card

ROOT = Path(__file__).resolve().parents[1]
METRICS = {
    "accuracy": 0.851,
    "dense_accuracy": 0.862,
    "sid_at_5": 0.614,
    "class_independence": 0.93,
    "contrastiveness": 0.87,
    "correlation": 0.21,
    "structural_grounding": 0.44,
    "nf_features": 6,
    "per_class": 2.0,
}
TRAINING = {
    "model_type": "qpm",
    "seed": 0,
    "data": {"name": "cub200", "root": "/data/CUB_200_2011", "crop_to_bbox": True},
    "dense": {"epochs": 150, "lr": 0.005},
    "publish": {
        "dataset": "org/cub-200-2011",
        "license": "cc-by-nc-4.0",
        "base_model": "timm/resnet50.a1_in1k",
    },
}


def config_of(
    model_type: str = "qpm",
    metrics: dict | None = None,
    training: dict | None = None,
    labels: list[str] | None = None,
    seed: int = 0,
) -> QPMConfig:
    config = make_model(model_type, seed=seed, labels=labels).config
    return config.replace(metrics=metrics or {}, training=training or {})


def section(card: str, title: str) -> str:
    match = re.search(
        rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, flags=re.DOTALL | re.MULTILINE
    )
    assert match, f"no section {title!r}"
    return match.group(1)


def test_card_is_valid_hub_metadata_with_the_metrics_as_model_index():
    card = render_model_card(config_of(metrics=METRICS, training=TRAINING), "org/qpm-resnet50-cub")
    data = ModelCard(card).data
    assert data.library_name == "qpm-zoo"
    assert data.pipeline_tag == "image-classification"
    assert {"image-classification", "interpretability", "qpm"} <= set(data.tags)
    assert data.datasets == ["org/cub-200-2011"]
    assert data.license == "cc-by-nc-4.0"
    assert data.base_model == "timm/resnet50.a1_in1k"
    assert data.model_name == "qpm-resnet50-cub"
    results = {r.metric_type: r for r in data.eval_results}
    assert {k: r.metric_value for k, r in results.items()} == METRICS
    assert results["sid_at_5"].metric_name == "SID@5"
    assert {(r.task_type, r.dataset_type, r.dataset_name) for r in results.values()} == {
        ("image-classification", "org/cub-200-2011", "org/cub-200-2011")
    }


def test_card_states_the_proven_assignment_gap_outside_the_model_index():
    proof = {"assignment_objective": 42.5, "assignment_bound": 42.65, "assignment_gap": 0.0036}
    card = render_model_card(
        config_of(metrics={**METRICS, **proof}, training=TRAINING), "org/qpm-resnet50-cub"
    )
    assert "proved this assignment within 0.36 % of the best possible" in card
    metrics = section(card, "Evaluation")
    assert "| Assignment gap | 0.0036 | lower |" in metrics
    assert "| Assignment bound | 42.65 |" in metrics
    # a property of the training's statistics, not an evaluation on the dataset
    types = {r.metric_type for r in ModelCard(card).data.eval_results}
    assert types == set(METRICS)

    optimal = {**proof, "assignment_bound": 42.5, "assignment_gap": 0.0}
    card = render_model_card(config_of(metrics=optimal, training=TRAINING))
    assert "proved this assignment optimal" in card
    assert "proved this assignment" not in render_model_card(config_of(metrics=METRICS))


def test_card_has_every_section_and_no_unfilled_field():
    card = render_model_card(config_of(metrics=METRICS, training=TRAINING), "org/qpm-resnet50-cub")
    headings = re.findall(r"^## (.+)$", card, flags=re.MULTILINE)
    assert headings == [
        "How to use",
        "Evaluation",
        "Global explanation",
        "Training recipe",
        "Limitations",
        "Citation",
    ]
    assert card.startswith("---\n") and "\n# qpm-resnet50-cub\n" in card
    assert "${" not in card and "$$" not in card
    citation = section(card, "Citation")
    assert "Discrete Optimization for Globally Interpretable Image Classification" in citation
    assert "Quantized Self-Explaining Neural Networks" in citation


def test_metrics_table_shows_each_metric_with_its_name():
    card = render_model_card(config_of(metrics={**METRICS, "my_extra": 3}, training=TRAINING))
    table = section(card, "Evaluation")
    assert "| Top-1 accuracy | 0.851 | higher |" in table
    assert "| Correlation | 0.21 | lower |" in table
    assert "| NFfeatures | 6 |" in table
    assert "| My extra | 3 |" in table
    assert "Measured on org/cub-200-2011 when the checkpoint was made" in table


def test_global_explanation_lists_classes_features_and_sharers():
    config = config_of(metrics=METRICS, training=TRAINING)
    text = section(render_model_card(config, max_classes=3), "Global explanation")
    explainer = GlobalExplainer(config)
    for c in range(3):
        expl = explainer.explain_class(c)
        assert f"**{expl.label}**" in text
        for f in expl.features:
            shared = ", ".join(f.shared_with) or "no other class"
            assert f"| {f.name} | {f.channel} | {shared} |" in text
    assert f"**{config.label_names[3]}**" not in text
    assert f"The first 3 of the {config.num_classes} classes" in text


def test_qsenn_card_shows_signed_weights_and_bias():
    config = config_of("qsenn", seed=1)
    card = render_model_card(config)
    assert "Q-SENN" in card and "q-senn" in ModelCard(card).data.tags
    expl = GlobalExplainer(config).explain_class(0)
    text = section(card, "Global explanation")
    assert f"**{expl.label}** (bias {expl.bias:+.3g})" in text
    assert "| Feature | Channel | Weight | Shared with |" in text
    f = expl.features[0]
    assert f"| {f.name} | {f.channel} | {f.weight:+.3g} |" in text


def test_card_without_metrics_or_recipe():
    card = render_model_card(config_of())
    data = ModelCard(card).data
    assert data.eval_results is None and data.datasets is None and data.license is None
    assert "config.json records no evaluation metrics" in section(card, "Evaluation")
    assert "config.json records no training recipe" in section(card, "Training recipe")
    assert 'QPM.from_pretrained("path/to/checkpoint")' in card


def test_metrics_without_a_known_dataset_stay_out_of_the_model_index():
    card = render_model_card(config_of(metrics=METRICS, training={"seed": 1}))
    assert ModelCard(card).data.eval_results is None
    evaluation = section(card, "Evaluation")
    assert "| SID@5 | 0.614 |" in evaluation
    assert "not in the Hub's model-index" in evaluation


def test_dataset_key_of_the_pipeline_names_the_dataset():
    card = render_model_card(
        config_of(metrics={"accuracy": 0.5}, training={"data": {"name": "fashion_mnist"}})
    )
    data = ModelCard(card).data
    assert data.datasets is None, "a pipeline key is not a Hub dataset id"
    assert (data.eval_results[0].dataset_type, data.eval_results[0].dataset_name) == (
        "fashion_mnist",
        "Fashion-MNIST",
    )


def test_training_recipe_is_the_recorded_config_as_yaml():
    card = render_model_card(config_of(training=TRAINING))
    block = re.search(
        r"```yaml\n(.*?)```", section(card, "Training recipe"), flags=re.DOTALL
    ).group(1)
    assert yaml.safe_load(block) == TRAINING


def test_usage_examples_name_the_repo_and_quote_class_names():
    labels = [
        'Bird\'s "nest"',
        "Summer Tanager",
        "Blue Jay",
        "Indigo Bunting",
        "Red-winged Blackbird",
    ]
    card = render_model_card(config_of(labels=labels), "org/qpm-quotes")
    cli = re.search(r"```bash\n(.*?)```", card, flags=re.DOTALL).group(1).splitlines()
    assert shlex.split(cli[0]) == ["qpm", "predict", "org/qpm-quotes", "image.jpg"]
    assert shlex.split(cli[-1]) == ["qpm", "compare", "org/qpm-quotes", labels[0], labels[1]]
    python = re.search(r"```python\n(.*?)```", card, flags=re.DOTALL).group(1)
    compile(python, "usage", "exec")
    assert 'model.explain_class("Bird\'s \\"nest\\"")' in python
    assert "has no ONNX export" in card and "QPMOnnx" not in card


def test_onnx_usage_appears_when_the_checkpoint_has_an_export():
    config = config_of().replace(
        onnx={
            "file": "model.onnx",
            "opset": 18,
            "sha256": "0" * 64,
            "dtype": "float32",
            "input_size": [3, 64, 64],
        }
    )
    card = render_model_card(config, "org/with-onnx")
    assert 'QPMOnnx.from_pretrained("org/with-onnx"' in card
    assert "qpm predict org/with-onnx image.jpg --onnx --json" in card
    assert "onnx" in ModelCard(card).data.tags
    assert "`model.onnx`" in card


def test_template_fields_are_the_ones_the_card_fills():
    template = load_template()
    assert template == (ROOT / "MODEL_CARD.md").read_text(), (
        "qpm_zoo/templates/MODEL_CARD.md is the root template"
    )
    assert set(string.Template(template).get_identifiers()) == {f.name for f in fields(CardFields)}


def test_bad_template_is_a_clear_error():
    config = config_of()
    with pytest.raises(QPMError, match=r"MODEL_CARD.md: unknown field \$\{nope\}"):
        render_model_card(config, template="${nope}")
    with pytest.raises(QPMError, match=r"literal dollar sign as \$\$"):
        render_model_card(config, template="costs $ 5")


def test_save_pretrained_writes_the_qpm_card(tmp_path):
    model = make_model("qpm", seed=4)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / README_NAME).read_text() == render_model_card(model.config)
    model.save_pretrained(tmp_path / "hub", model_card_kwargs={"repo_id": "org/qpm-4"})
    assert 'QPM.from_pretrained("org/qpm-4")' in (tmp_path / "hub" / README_NAME).read_text()
    with pytest.raises(TypeError, match="only repo_id"):
        model.generate_model_card(language="en")


def test_card_rendering_is_torch_free(qpm_dir):
    result = run_without_torch(
        f"""
        import sys
        from qpm_zoo import QPMConfig
        from qpm_zoo.card import render_model_card

        card = render_model_card(QPMConfig.load({str(qpm_dir / "config.json")!r}), "org/x")
        assert "library_name: qpm-zoo" in card
        assert not any(m.split(".")[0] in ("torch", "timm") for m in sys.modules), "torch imported"
        print("OK")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


@pytest.mark.slow
def test_wheel_ships_the_template_and_renders_cards(tmp_path, qpm_dir):
    """The wheel (which ships only qpm_zoo) carries MODEL_CARD.md, and its card module uses it."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("qpm_zoo-*.whl")
    template = "qpm_zoo/templates/MODEL_CARD.md"
    with zipfile.ZipFile(wheel) as zf:
        assert template in zf.namelist(), (
            "the wheel lacks the model-card template: pyproject.toml must list the package "
            "qpm_zoo.templates and its package-data *.md"
        )
        assert zf.read(template).decode() == (ROOT / "MODEL_CARD.md").read_text()
        zf.extractall(tmp_path / "site")
    code = f"""
        import qpm_zoo
        from qpm_zoo import QPMConfig
        from qpm_zoo.card import render_model_card
        assert qpm_zoo.__file__.startswith({str(tmp_path / "site")!r}), qpm_zoo.__file__
        print(render_model_card(QPMConfig.load({str(qpm_dir / "config.json")!r}), "org/x")[:3])
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "---"
