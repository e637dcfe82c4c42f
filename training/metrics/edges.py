"""Are the learned class → feature edges the true class → concept edges? (known-concept data)

Every positive weight W[c, f] > 0 is a learned edge "class c has feature f". Through the
feature's matched concept it claims "class c has concept feature_concept[f]"; the truth is
the binary table class_concepts [C, K]. Negative weights (Q-SENN) claim the absence of a
feature, not a concept of the class, so they are not edges here.

Counting, with duplicates made explicit:
- The claimed class → concept edges are a set: two features of one class matched to the same
  concept make one claim. A true edge is recalled if at least one of the class's features
  maps to it (counted once for recall) and a claim is correct or wrong once for precision.
  The redundant extra edges are reported as `duplicate_edges`, not hidden.
- An edge to an unmatched feature (feature_concept = -1) claims no concept: it is one wrong
  claim each (it counts against precision) and is reported as `unmatched_edges`.
precision = correct claims / all claims, recall = correct claims / true edges, F1 their
harmonic mean (0 when both are 0); all in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._inputs import binary_array, float_array, int_array
from .concept_matching import UNMATCHED


@dataclass(frozen=True)
class EdgeScores:
    precision: float
    recall: float
    f1: float
    correct_edges: int  #: claimed class → concept edges that are true
    claimed_edges: int  #: distinct claimed class → concept edges + edges to unmatched features
    true_edges: int  #: ones in class_concepts
    duplicate_edges: int  #: learned edges whose class → concept claim another feature already made
    unmatched_edges: int  #: learned edges to features matched to no concept

    def to_dict(self) -> dict:
        return asdict(self)


def edge_scores(weight: Any, feature_concept: Any, class_concepts: Any) -> EdgeScores:
    """Precision, recall, F1 of weight [C, n] read through feature_concept [n] (concept id or
    -1) against the true class → concept table class_concepts [C, K] (binary)."""
    w = float_array(weight, "weight", 2)
    truth = binary_array(class_concepts, "class_concepts", 2)
    num_classes, num_features = w.shape
    num_concepts = truth.shape[1]
    if truth.shape[0] != num_classes:
        raise ValueError(
            f"class_concepts has {truth.shape[0]} classes (rows) but weight has {num_classes}"
        )
    concept = int_array(feature_concept, "feature_concept", UNMATCHED, num_concepts)
    if len(concept) != num_features:
        raise ValueError(
            f"feature_concept has {len(concept)} entries but weight has {num_features} features"
        )
    edges = w > 0
    if not edges.any():
        raise ValueError(
            "weight has no positive entry: there are no class → feature edges to score"
        )
    if not truth.any():
        raise ValueError("class_concepts has no true class → concept edge")

    matched = concept != UNMATCHED
    feature_to_concept = np.zeros((num_features, num_concepts))
    feature_to_concept[np.flatnonzero(matched), concept[matched]] = 1.0
    votes = edges.astype(np.float64) @ feature_to_concept  # [C, K] features per class → concept
    claimed = votes > 0
    unmatched_edges = int(edges[:, ~matched].sum())
    correct = int((claimed & truth).sum())
    claimed_edges = int(claimed.sum()) + unmatched_edges
    true_edges = int(truth.sum())
    precision = correct / claimed_edges
    recall = correct / true_edges
    f1 = 0.0 if correct == 0 else 2 * precision * recall / (precision + recall)
    return EdgeScores(
        precision=precision,
        recall=recall,
        f1=f1,
        correct_edges=correct,
        claimed_edges=claimed_edges,
        true_edges=true_edges,
        duplicate_edges=int(np.maximum(votes - 1, 0).sum()),
        unmatched_edges=unmatched_edges,
    )
