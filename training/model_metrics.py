"""Every metric of a trained model (docs/method.md §6), and the ground-truth concept metrics where the
data has them, computed in one pass over the training set and one over the test set.

Feature statistics (Class-Independence, Contrastiveness, Correlation) use the training set
with test-time transforms, as the papers do; accuracy, SID@5 and the pointing game use the test
set. Features are matched to concepts on the training set and scored on the test set. The QPM is evaluated on its normalised selected features and their maps; the dense model
on its pooled features and all maps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .logs import progress
from .metrics import (
    GroundTruthReport,
    PaperMetrics,
    PointingGame,
    SIDAccumulator,
    class_independence,
    class_similarity_from_attributes,
    contrastiveness,
    correlation,
    edge_scores,
    match_features_to_concepts,
    nf_features,
    per_class,
    structural_grounding,
)

SID_K = 5  #: the papers' SID@5; models with fewer features per class use SID@k


@dataclass(frozen=True)
class ModelEvaluation:
    paper: PaperMetrics
    ground_truth: GroundTruthReport | None = None

    def flat(self, prefix: str = "") -> dict[str, Any]:
        """snake_case metric names → values, as recorded in config.json's `metrics`."""
        p = self.paper
        out: dict[str, Any] = {
            "accuracy": p.accuracy,
            "nf_features": p.nf_features,
            "per_class": p.per_class,
            f"sid_at_{p.sid_k}": p.sid,
            "class_independence": p.class_independence,
            "correlation": p.correlation,
        }
        if p.contrastiveness is not None:
            out["contrastiveness"] = p.contrastiveness
        if p.structural_grounding is not None:
            out["structural_grounding"] = p.structural_grounding
        if self.ground_truth is not None:
            gt = self.ground_truth
            matched = gt.matching.best_auc[np.isfinite(gt.matching.best_auc)]
            out.update(
                concept_auc=float(matched.mean()) if matched.size else None,
                concept_edge_precision=gt.edges.precision,
                concept_edge_recall=gt.edges.recall,
                concept_edge_f1=gt.edges.f1,
                pointing_game=gt.pointing.overall,
            )
        return {f"{prefix}{k}": v for k, v in out.items()}

    def to_dict(self) -> dict:
        out = {"paper": self.paper.to_dict()}
        if self.ground_truth is not None:
            out["ground_truth"] = self.ground_truth.to_dict()
        return out


@torch.inference_mode()
def collect_features(
    model: torch.nn.Module, loader: Iterable, device: torch.device, desc: str
) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, F] (as the model's classifier sees them) and labels [N] over a loader."""
    model.eval()
    features, labels = [], []
    for x, y in progress(loader, desc):
        features.append(model.forward_all(x.to(device)).features.float().cpu())
        labels.append(y)
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module,
    weight: torch.Tensor,
    train_loader: Iterable,
    test_loader: Iterable,
    device: torch.device,
    *,
    num_classes: int,
    class_attributes: np.ndarray | None = None,
    ground_truth: Any = None,
    with_contrastiveness: bool = True,
    sid_k: int = SID_K,
    desc: str = "model",
) -> ModelEvaluation:
    """All metrics of one model. `weight` [C, F] is the layer that maps its features to logits;
    `ground_truth` (a ConceptGroundTruth in model-input coordinates) adds the concept metrics."""
    model.eval()
    weight = weight.detach().float().cpu()
    train_features, train_labels = collect_features(
        model, train_loader, device, f"{desc}: train features"
    )

    # which concept each feature sees is decided on the training set; edges and the pointing
    # game are then scored on the test set, so the matching never sees a test image
    matching = pointing = None
    if ground_truth is not None:
        matching = match_features_to_concepts(train_features, ground_truth.presence("train"))
        pointing = PointingGame(matching.concept, *ground_truth.input_size)
        truths = ground_truth.images("test")

    sid = SIDAccumulator(weight, k=sid_k)
    test_logits, test_labels = [], []
    start = 0
    for x, y in progress(test_loader, f"{desc}: test"):
        out = model.forward_all(x.to(device))
        logits = out.logits.float().cpu()
        maps = out.feature_maps.float().cpu()
        sid.update(maps, logits.argmax(dim=1))
        if pointing is not None:
            pointing.update(maps, [t.annotations() for t in truths[start : start + len(y)]])
        test_logits.append(logits)
        test_labels.append(y)
        start += len(y)
    logits = torch.cat(test_logits)
    labels = torch.cat(test_labels)

    report = None
    if ground_truth is not None:
        report = GroundTruthReport(
            matching=matching,
            edges=edge_scores(
                weight.numpy(), matching.concept, ground_truth.class_concept_matrix()
            ),
            pointing=pointing.compute(),
        )

    grounding = None
    if class_attributes is not None:
        pairs = num_classes * (num_classes - 1) // 2  # docs/method.md's 50 pairs, or all when fewer
        grounding = structural_grounding(
            weight.numpy(), class_similarity_from_attributes(class_attributes), top=min(50, pairs)
        )
    paper = PaperMetrics(
        accuracy=float((logits.argmax(dim=1) == labels).float().mean()),
        nf_features=nf_features(weight.numpy()),
        per_class=per_class(weight.numpy()),
        sid=sid.compute(),
        class_independence=class_independence(train_features, train_labels, num_classes),
        correlation=correlation(train_features),
        contrastiveness=contrastiveness(train_features) if with_contrastiveness else None,
        structural_grounding=grounding,
        sid_k=sid_k,
    )
    return ModelEvaluation(paper, report)


def concept_feature_names(report: GroundTruthReport, concept_names: tuple[str, ...]) -> list[str]:
    """Name each feature after the concept it matches best (unique names: '#2' on repeats)."""
    names, seen = [], {}
    for j, (concept, auc) in enumerate(zip(report.matching.concept, report.matching.best_auc)):
        if concept < 0 or not np.isfinite(auc):
            names.append(f"feature {j}")
            continue
        base = concept_names[int(concept)]
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return names
