"""Which ground-truth concept each learned feature detects, on a dataset whose concepts are known.

A feature is matched to the concept whose presence in an image its (pooled) activation predicts
best, measured by ROC-AUC: the probability that a random image with the concept activates the
feature more than a random image without it (ties count one half). AUC is invariant to any
increasing transformation of the feature, so normalised or raw features give the same match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._inputs import binary_array, float_array, same_length
from ._serialise import json_list

#: feature_concept value of a feature that detects no concept well enough (best AUC < min_auc).
UNMATCHED = -1


@dataclass(frozen=True)
class ConceptMatch:
    """Per feature its best concept (UNMATCHED = -1 if below min_auc) and all AUCs."""

    concept: np.ndarray  #: [n] int, the matched concept id or -1
    best_auc: np.ndarray  #: [n] the AUC of the best concept (also when it is below min_auc)
    auc: np.ndarray  #: [n, K] NaN for a concept present in every image or in none

    def to_dict(self) -> dict:
        return {
            "feature_concept": json_list(self.concept),
            "best_auc": json_list(self.best_auc),
            "auc": json_list(self.auc),
        }


def concept_auc(features: Any, concept_present: Any) -> np.ndarray:
    """ROC-AUC [n, K] of each feature (column of features [N, n]) for each concept's presence
    (sklearn's roc_auc_score; NaN for a concept present in every image or in none)."""
    from sklearn.metrics import roc_auc_score

    x = float_array(features, "features", 2)
    present = binary_array(concept_present, "concept_present", 2)
    same_length(("features", x.shape[0]), ("concept_present", present.shape[0]))
    positives = present.sum(axis=0)
    defined = (positives > 0) & (positives < x.shape[0])
    if not defined.any():
        raise ValueError(
            "concept_present: every concept is present in all images or in none; AUC needs both"
        )
    auc = np.full((x.shape[1], present.shape[1]), np.nan)
    for k in np.flatnonzero(defined):  # every feature's AUC for concept k in one call
        auc[:, k] = roc_auc_score(np.broadcast_to(present[:, k : k + 1], x.shape), x, average=None)
    return auc


def match_features_to_concepts(
    features: Any, concept_present: Any, min_auc: float = 0.0
) -> ConceptMatch:
    """Match each feature [N, n] to the concept [N, K] (binary presence) with the highest AUC.

    Ties go to the lower concept id. Features whose best AUC is below `min_auc` stay
    unmatched (-1); the default 0 matches every feature, so a feature that detects nothing is
    matched to some concept and then costs precision in `edge_scores` rather than vanishing.
    """
    if not 0.0 <= float(min_auc) <= 1.0:
        raise ValueError(f"min_auc must be in [0, 1], got {min_auc!r}")
    auc = concept_auc(features, concept_present)
    best = np.nanargmax(auc, axis=1)
    best_auc = auc[np.arange(auc.shape[0]), best]
    concept = np.where(best_auc >= min_auc, best, UNMATCHED).astype(np.int64)
    return ConceptMatch(concept=concept, best_auc=best_auc, auc=auc)
