"""The model card (README.md) of a checkpoint: the MODEL_CARD.md template filled from config.json.

One template holds the prose (MODEL_CARD.md at the repository root, shipped in the wheel as
qpm_zoo/templates/MODEL_CARD.md); this module fills its `${field}`s from what config.json says,
so a card never needs the weights. Torch-free: `python -m training publish` and
`QPM.save_pretrained` / `push_to_hub` both write their README.md with `render_model_card`.

What comes from where in config.json:
- `metrics` (numbers by key) → the metrics table and, when the dataset is known, the Hub's
  `model-index`;
- `training` (the recipe) → the YAML block of the training section; its `publish` part (or the
  top level) may name `dataset` (a Hub dataset id), `license` and `base_model` for the Hub
  metadata, and `data.name` names the dataset when no Hub id is given;
- the assignment → the summary of the global explanation (a few classes, their features and
  the classes that share them), through `GlobalExplainer`.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from .checkpoint import README_NAME  # noqa: F401 - re-exported: training.publish reads it here
from .config import CONFIG_NAME, WEIGHTS_NAME, QPMConfig
from .errors import ModelCardError
from .explain import GlobalExplainer
from .version import __version__

TEMPLATE_NAME = "MODEL_CARD.md"

#: Model id written into the usage examples when the card is rendered without a Hub repo id.
LOCAL_MODEL_ID = "path/to/checkpoint"


@dataclass(frozen=True)
class MetricInfo:
    """How one key of config.json's `metrics` is shown on the card and in the model-index."""

    name: str
    hub_type: str | None  #: None: a property of the training, not an evaluation on the dataset
    higher_is_better: bool | None
    meaning: str


#: The metrics the evaluation writes (names as in the papers, docs/method.md §6), in display order.
#: `dense_<key>` is the same metric of the dense model; `sid_at_<k>` is SID at any k. Other
#: keys are shown too, under a name made from the key.
METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo("Top-1 accuracy", "accuracy", True, "of this interpretable model"),
    "dense_accuracy": MetricInfo(
        "Dense accuracy", "dense_accuracy", True, "of the dense model before the assignment"
    ),
    "nf_features": MetricInfo(
        "NFfeatures", "nf_features", None, "number of features the classes use"
    ),
    "per_class": MetricInfo("PerClass", "per_class", None, "mean number of features per class"),
    "sid_at_5": MetricInfo(
        "SID@5", "sid_at_5", True, "diversity: do a class's features look at different places"
    ),
    "class_independence": MetricInfo(
        "Class-Independence", "class_independence", True, "features are not tied to a single class"
    ),
    "contrastiveness": MetricInfo(
        "Contrastiveness", "contrastiveness", True, "features are either clearly on or clearly off"
    ),
    "correlation": MetricInfo(
        "Correlation", "correlation", False, "redundancy between the features"
    ),
    "structural_grounding": MetricInfo(
        "Structural Grounding",
        "structural_grounding",
        True,
        "class similarity through shared features vs. ground-truth attributes",
    ),
    "concept_auc": MetricInfo(
        "Concept AUC",
        "concept_auc",
        True,
        "known-concept data: how well each feature detects the concept it is matched to (ROC-AUC)",
    ),
    "concept_edge_precision": MetricInfo(
        "Concept edge precision",
        "concept_edge_precision",
        True,
        "known-concept data: share of the learned class-feature edges that are true class-concept edges",
    ),
    "concept_edge_recall": MetricInfo(
        "Concept edge recall",
        "concept_edge_recall",
        True,
        "known-concept data: share of the true class-concept edges the assignment recovers",
    ),
    "concept_edge_f1": MetricInfo(
        "Concept edge F1", "concept_edge_f1", True, "known-concept data: F1 of the two above"
    ),
    "pointing_game": MetricInfo(
        "Pointing game",
        "pointing_game",
        True,
        "known-concept data: share of images where a feature's map peaks inside its concept's box",
    ),
    "assignment_gap": MetricInfo(
        "Assignment gap",
        None,
        False,
        "proven: no assignment of the training statistics scores more than this share above "
        "this one",
    ),
    "assignment_objective": MetricInfo(
        "Assignment objective", None, True, "the solver's objective of this assignment"
    ),
    "assignment_bound": MetricInfo(
        "Assignment bound", None, None, "proven upper bound on any assignment's objective"
    ),
}

#: Display names of the dataset keys the training pipeline uses (`training.data.name`).
DATASET_NAMES = {
    "cub200": "CUB-200-2011",
    "stanford_cars": "Stanford Cars",
    "fashion_mnist": "Fashion-MNIST",
    "concepts": "generated concept images (synthetic, with known ground truth)",
    "imagefolder": "an image folder",
}

MODEL_TYPE_NAMES = {"qpm": "QPM", "qsenn": "Q-SENN"}


@dataclass(frozen=True)
class RecipeMetadata:
    """What the training recipe says about the Hub metadata; every field may be unknown."""

    dataset_id: str | None  #: a Hub dataset id, for the `datasets:` metadata
    dataset_key: str | None  #: the pipeline's dataset key (`training.data.name`)
    dataset_name: str | None  #: a name for people and for the model-index
    license: str | None
    base_model: str | None

    @classmethod
    def from_training(cls, training: dict) -> RecipeMetadata:
        publish = training.get("publish") if isinstance(training.get("publish"), dict) else {}

        def text(key: str) -> str | None:
            for source in (publish, training):
                value = source.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip()
            return None

        dataset_id = text("dataset")
        data = training.get("data")
        data_key = (
            data.get("name")
            if isinstance(data, dict) and isinstance(data.get("name"), str)
            else None
        )
        name = dataset_id or (DATASET_NAMES.get(data_key, data_key) if data_key else None)
        return cls(dataset_id, data_key, name, text("license"), text("base_model"))


def metric_info(key: str) -> MetricInfo:
    """How to show a metric key (see METRICS; handles `dense_` and `sid_at_<k>`)."""
    if key in METRICS:
        return METRICS[key]
    sid = re.fullmatch(r"sid_at_(\d+)", key)
    if sid:
        base = METRICS["sid_at_5"]
        return MetricInfo(f"SID@{sid.group(1)}", key, base.higher_is_better, base.meaning)
    if key.startswith("dense_"):
        base = metric_info(key.removeprefix("dense_"))
        return MetricInfo(
            f"{base.name} (dense)", key, base.higher_is_better, f"{base.meaning}, dense model"
        )
    return MetricInfo(key.replace("_", " ").capitalize(), key, None, "")


def metric_rank(key: str) -> int:
    """Display position of a metric (unknown keys last; SID at any k where SID@5 stands)."""
    base = key.removeprefix("dense_")
    base = "sid_at_5" if re.fullmatch(r"sid_at_\d+", base) else base
    order = list(METRICS)
    return order.index(base) if base in order else len(order)


def _number(value: Any) -> float | int | None:
    """The value as a finite number, or None for anything a table or model-index cannot show."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _fmt(value: Any) -> str:
    number = _number(value)
    if number is None:
        if value is None or isinstance(value, float):
            return "-"
        return _cell(value if isinstance(value, str) else json.dumps(value))
    return str(number) if isinstance(number, int) else format(number, ".4g")


def _cell(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load_template() -> str:
    """The MODEL_CARD.md template shipped with qpm_zoo."""
    path = resources.files("qpm_zoo") / "templates" / TEMPLATE_NAME
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise ModelCardError(
            f"{path}: the model-card template is missing from this qpm-zoo installation "
            "(reinstall qpm-zoo)"
        ) from None


# -- metadata (YAML front matter) ------------------------------------------------------------------
def card_metadata(config: QPMConfig, repo_id: str | None = None) -> ModelCardData:
    """The Hub metadata of a checkpoint (the card's YAML front matter), with its model-index."""
    recipe = RecipeMetadata.from_training(config.training)
    results = []
    if recipe.dataset_name is not None:
        for key, value in config.metrics.items():
            number = _number(value)
            if number is None:
                continue
            info = metric_info(key)
            if info.hub_type is None:
                continue
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Image Classification",
                    dataset_type=recipe.dataset_id or recipe.dataset_key or recipe.dataset_name,
                    dataset_name=recipe.dataset_name,
                    metric_type=info.hub_type,
                    metric_name=info.name,
                    metric_value=number,
                )
            )
    tags = [
        "image-classification",
        "interpretability",
        "qpm-zoo",
        "pytorch",
        "safetensors",
        "qpm" if config.model_type == "qpm" else "q-senn",
    ]
    if config.onnx is not None:
        tags.append("onnx")
    return ModelCardData(
        library_name="qpm-zoo",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[recipe.dataset_id] if recipe.dataset_id else None,
        license=recipe.license,
        base_model=recipe.base_model,
        model_name=_model_name(config, repo_id) if results else None,
        eval_results=results or None,
    )


def _model_name(config: QPMConfig, repo_id: str | None) -> str:
    if repo_id:
        return repo_id.rsplit("/", 1)[-1]
    return f"{config.model_type}-{config.backbone.name}"


# -- sections ------------------------------------------------------------------------------------
def _summary(config: QPMConfig, recipe: RecipeMetadata) -> str:
    n, k, C = config.n_features, config.k, config.num_classes
    if config.model_type == "qpm":
        text = (
            f"A **QPM** (Quadratic Programming Enhanced Model, ICLR 2025) image classifier. A "
            f"`{config.backbone.name}` backbone computes features; {n} of them feed an "
            f"interpretable layer in which each of the {C} classes is assigned exactly k = {k} "
            "features, each with weight 1. The assignment was found by discrete optimisation so "
            "that similar classes share features, and the backbone was fine-tuned so that each "
            "feature becomes what its classes have in common. A class's logit is the sum of its k "
            "normalised feature activations: every prediction has an exact explanation of k terms, "
            "and any two classes can be compared feature by feature."
        )
        gap = _number(config.metrics.get("assignment_gap"))  # docs/method.md §7.6
        if gap is not None:
            text += (
                f" The solver proved this assignment within {100 * gap:.2f} % of the best "
                "possible one for its objective (its score against a proven upper bound)."
                if gap > 0
                else " The solver proved this assignment optimal for its objective."
            )
    else:
        sizes = [len(row) for row in config.assignment.class_features]
        text = (
            "A **Q-SENN** (Quantized Self-Explaining Neural Network, AAAI 2024) image classifier. "
            f"A `{config.backbone.name}` backbone computes features; {n} of them feed a sparse, "
            f"quantised layer in which each of the {C} classes uses on average "
            f"{sum(sizes) / len(sizes):.1f} features with a positive or negative weight, plus a "
            "bias. A class's logit is its bias plus the weighted sum of its normalised feature "
            "activations: every prediction has an exact explanation of a few terms."
        )
    if recipe.dataset_name:
        text += f" Trained on {recipe.dataset_name}."
    return text


def _facts_table(config: QPMConfig, recipe: RecipeMetadata) -> str:
    bb, prep = config.backbone, config.preprocessing
    backbone = f"`{bb.name}` (timm)"
    if bb.reduced_strides:
        backbone += ", reduced strides"
    if bb.kwargs:
        backbone += ", " + ", ".join(f"{key}={value!r}" for key, value in sorted(bb.kwargs.items()))
    if bb.adapter is not None:
        a = bb.adapter
        shape = f"{a.layers} layers, {a.hidden} hidden, " if a.kind == "mlp" else ""
        backbone += f", {a.kind} adapter ({shape}{a.features} features)"
    files = [CONFIG_NAME, WEIGHTS_NAME]
    if config.onnx is not None:
        files.append(str(config.onnx.file))
    _, height, width = prep.input_size
    rows = [
        ("Model type", MODEL_TYPE_NAMES[config.model_type]),
        ("Backbone", backbone),
        ("Classes", str(config.num_classes)),
        (
            "Interpretable layer",
            f"n = {config.n_features} of the backbone's {bb.map_channels} features; "
            + (
                f"k = {config.k} per class"
                if config.model_type == "qpm"
                else f"about {config.k} per class"
            ),
        ),
        (
            "Input",
            (
                f"RGB {height}×{width}, {prep.interpolation} resize, {prep.crop_mode} crop "
                f"{prep.crop_pct:g}, mean {list(prep.mean)}, std {list(prep.std)}"
            ),
        ),
        ("Files", ", ".join(f"`{name}`" for name in files)),
        ("Dataset", recipe.dataset_name or "not recorded"),
        ("License", recipe.license or _unknown_license(config)),
    ]
    if recipe.base_model:
        rows.append(("Base model", recipe.base_model))
    rows.append(
        (
            "Checkpoint",
            f"format {config.format_version}, written by qpm-zoo {config.library_version}",
        )
    )
    return markdown_table(["", ""], rows)


def _unknown_license(config: QPMConfig) -> str:
    return (
        "not stated by the weights' authors (see Provenance)"
        if config.provenance
        else "not recorded"
    )


def _example_classes(config: QPMConfig) -> tuple[str, str]:
    names = config.label_names
    return names[0], names[1] if len(names) > 1 else names[0]


def _python_usage(config: QPMConfig, model_id: str) -> str:
    a, b = (json.dumps(name, ensure_ascii=False) for name in _example_classes(config))
    return "\n".join(
        [
            "from qpm_zoo import QPM",
            "",
            f"model = QPM.from_pretrained({json.dumps(model_id)})",
            'pred = model.predict("image.jpg")',
            'print(pred.label, f"{pred.probability:.3f}")',
            "for f in pred.explanation.features:  # logit = bias + sum of these contributions",
            '    print(f"{f.contribution:+.3f}  {f.name}  shared with {list(f.shared_with)}")',
            "",
            f"print(model.explain_class({a}))  # a class's features and who shares them",
            f"print(model.compare({a}, {b}))  # shared vs. distinguishing features",
        ]
    )


def _onnx_usage(config: QPMConfig, model_id: str) -> str:
    if config.onnx is None:
        return (
            "This checkpoint has no ONNX export (`model.onnx`); `python -m export onnx` in a clone "
            "of qpm-zoo makes one."
        )
    return "\n".join(
        [
            "Without PyTorch, the ONNX export gives the same predictions and explanations:",
            "",
            "```python",
            "from qpm_zoo import QPMOnnx",
            "",
            (
                f"model = QPMOnnx.from_pretrained({json.dumps(model_id)}, "
                'providers=["CUDAExecutionProvider", "CPUExecutionProvider"])'
            ),
            'pred = model.predict("image.jpg")',
            "```",
        ]
    )


def _cli_usage(config: QPMConfig, model_id: str) -> str:
    a, b = (shlex.quote(name) for name in _example_classes(config))
    mid = shlex.quote(model_id)
    lines = [f"qpm predict {mid} image.jpg"]
    if config.onnx is not None:
        lines.append(f"qpm predict {mid} image.jpg --onnx --json")
    lines += [f"qpm explain {mid} {a}", f"qpm compare {mid} {a} {b}"]
    return "\n".join(lines)


def _metrics_section(config: QPMConfig, recipe: RecipeMetadata) -> str:
    if not config.metrics:
        return "config.json records no evaluation metrics for this checkpoint."
    rows = []
    for key, value in config.metrics.items():
        info = metric_info(key)
        better = {True: "higher", False: "lower", None: ""}[info.higher_is_better]
        rows.append((info.name, _fmt(value), better, info.meaning))
    where = f" on {recipe.dataset_name}" if recipe.dataset_name else ""
    text = f"Measured{where} when the checkpoint was made; the metrics are defined as in the "
    text += "QPM paper.\n\n"
    text += markdown_table(["Metric", "Value", "Better", "Meaning"], rows)
    if recipe.dataset_name is None:
        text += (
            "\n\nThese metrics are not in the Hub's model-index: config.json does not say which "
            "dataset they were measured on (`training.publish.dataset`)."
        )
    return text


def _prediction_sets_section(config: QPMConfig, model_id: str) -> str:
    """The calibrated coverages and how their sets did on the test split (docs/method.md §9)."""
    c = config.calibration
    if c is None:
        return ""
    score = {"lac": "LAC (1 − p)", "aps": "APS", "raps": "RAPS"}[c.score]
    if c.score == "raps":
        score += f", λ = {c.raps_lambda:g}, k_reg = {c.raps_k_reg}"
    parts = [
        "## Prediction sets",
        (
            f"Split-conformal prediction sets, calibrated on {c.images} held-out images "
            f"({_cell(c.split)}) with the {score} score: a set holds the true class with "
            "probability at least its coverage, for images exchangeable with the calibration "
            f"images. `qpm predict {model_id} IMAGE --coverage {c.coverages[0]:g}` gives the set "
            "with the features its classes share and those that set each apart. A set can be "
            "empty (no class within the threshold: at that coverage the image is among those the "
            "target lets go); `--never-empty` puts the top class in instead, which only raises "
            "coverage, up to the model's accuracy."
        ),
    ]
    rows = []
    for t in c.targets:
        measured = t.test_coverage is not None
        rows.append(
            (
                f"{t.coverage:.0%}",
                f"{t.threshold:.4g}",
                f"{t.test_coverage:.1%}" if measured else "–",
                f"{t.test_mean_size:.2f}" if measured else "–",
                f"{t.test_empty_share:.1%}" if t.test_empty_share is not None else "–",
                f"{_cell(t.test_worst_class)}: {t.test_worst_class_coverage:.1%}"
                if measured
                else "–",
            )
        )
    tested = (
        f"Measured on {c.test_images} test images ({_cell(c.test_split)})."
        if c.test_images
        else "Not measured on test images."
    )
    parts.append(
        tested + " Test coverage: of the sets as `predict` returns them (empty ones count as "
        "misses); mean set size counts an empty set as 0.\n\n"
        + markdown_table(
            [
                "Coverage",
                "Threshold",
                "Test coverage",
                "Mean set size",
                "Empty sets",
                "Worst class",
            ],
            rows,
        )
    )
    return "\n\n".join(parts) + "\n\n"


def _sharing_stats(config: QPMConfig) -> str:
    users = [0] * config.n_features
    for row in config.assignment.class_features:
        for j in row:
            users[j] += 1
    used = [u for u in users if u]
    if not used:
        return "No class uses any feature."
    text = (
        f"Each of the {len(used)} features the classes use serves {min(used)}–{max(used)} "
        f"classes (mean {sum(used) / len(used):.1f})."
    )
    if len(used) < len(users):
        text += f" {len(users) - len(used)} selected features are used by no class."
    return text


def _explanation_section(config: QPMConfig, model_id: str, max_classes: int) -> str:
    explainer = GlobalExplainer(config)
    signed = config.model_type != "qpm"
    shown = min(max_classes, config.num_classes)
    parts = [
        _sharing_stats(config),
        (
            f"The first {shown} of the {config.num_classes} classes (any class: "
            f"`qpm explain {model_id} CLASS`, any pair: `qpm compare {model_id} A B`):"
        ),
    ]
    for c in range(shown):
        expl = explainer.explain_class(c)
        heading = f"**{_cell(expl.label)}**"
        if signed:
            heading += f" (bias {expl.bias:+.3g})"
        headers = ["Feature", "Channel"] + (["Weight"] if signed else []) + ["Shared with"]
        rows = []
        for f in expl.features:
            name = f.name + (f" ({f.description})" if f.description else "")
            shared = _shared_list(f.shared_with)
            rows.append(
                [name, str(f.channel)] + ([f"{f.weight:+.3g}"] if signed else []) + [shared]
            )
        parts.append(heading + "\n\n" + markdown_table(headers, rows))
    return "\n\n".join(parts)


def _shared_list(names: Sequence[str], limit: int = 6) -> str:
    if not names:
        return "no other class"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _provenance_section(config: QPMConfig) -> str:
    """Where converted weights come from, and what their authors (not qpm-zoo) report."""
    p = config.provenance
    if p is None:
        return ""
    parts = [
        "## Provenance",
        (
            "The weights were converted from a release by the method's authors; qpm-zoo did not "
            f"train them. File: `{p.file}` (SHA-256 `{p.sha256}`), from {p.source}. Paper: "
            f"{p.paper}."
        ),
    ]
    if p.note:
        parts.append(p.note)
    if p.reported_metrics:
        rows = [(metric_info(key).name, _fmt(value)) for key, value in p.reported_metrics.items()]
        parts.append(
            "Reported by the authors for this file, not measured here:\n\n"
            + markdown_table(["Metric", "Reported"], rows)
        )
    return "\n\n".join(parts) + "\n\n"


def _training_section(config: QPMConfig) -> str:
    if config.provenance is not None:
        return "The authors trained these weights with their own code (see Provenance)."
    if not config.training:
        return "config.json records no training recipe for this checkpoint."
    import yaml

    recipe = yaml.safe_dump(config.training, sort_keys=False, allow_unicode=True, width=100)
    return (
        "The recipe this checkpoint was trained with, as recorded in config.json (`training`):\n\n"
        f"```yaml\n{recipe.rstrip()}\n```"
    )


# -- the card ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CardFields:
    """The values of the template's `${field}`s."""

    front_matter: str
    title: str
    summary: str
    facts_table: str
    provenance_section: str  #: empty, or a whole section ending in a blank line
    python_usage: str
    onnx_usage: str
    cli_usage: str
    metrics_section: str
    prediction_sets_section: str  #: empty, or a whole section ending in a blank line
    explanation_section: str
    training_section: str
    library_version: str


def _title(config: QPMConfig, repo_id: str | None) -> str:
    if repo_id:
        return repo_id.rsplit("/", 1)[-1]
    kind = MODEL_TYPE_NAMES[config.model_type]
    return f"{kind} on {config.backbone.name}, {config.num_classes} classes"


def card_fields(config: QPMConfig, repo_id: str | None = None, max_classes: int = 4) -> CardFields:
    recipe = RecipeMetadata.from_training(config.training)
    model_id = repo_id or LOCAL_MODEL_ID
    return CardFields(
        front_matter=card_metadata(config, repo_id).to_yaml().strip(),
        title=_title(config, repo_id),
        summary=_summary(config, recipe),
        facts_table=_facts_table(config, recipe),
        provenance_section=_provenance_section(config),
        python_usage=_python_usage(config, model_id),
        onnx_usage=_onnx_usage(config, model_id),
        cli_usage=_cli_usage(config, model_id),
        metrics_section=_metrics_section(config, recipe),
        prediction_sets_section=_prediction_sets_section(config, model_id),
        explanation_section=_explanation_section(config, model_id, max_classes),
        training_section=_training_section(config),
        library_version=__version__,
    )


def render_model_card(
    config: QPMConfig,
    repo_id: str | None = None,
    *,
    template: str | None = None,
    max_classes: int = 4,
) -> str:
    """The README.md of a checkpoint: the template filled from `config`.

    `repo_id` (e.g. "org/qpm-resnet50-cub") goes into the title and the usage examples; without
    it they use a local folder path. Raises ModelCardError if the template names an unknown field.
    """
    text = load_template() if template is None else template
    fields = asdict(card_fields(config, repo_id, max_classes))
    try:
        return string.Template(text).substitute(fields)
    except KeyError as e:
        raise ModelCardError(
            f"{TEMPLATE_NAME}: unknown field ${{{e.args[0]}}}; the fields are {sorted(fields)}"
        ) from None
    except ValueError as e:
        raise ModelCardError(f"{TEMPLATE_NAME}: {e} (write a literal dollar sign as $$)") from None
