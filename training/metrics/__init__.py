"""Metrics of a trained model: the papers' interpretability metrics (docs/method.md §6) and, on data
whose concepts are known, how well the learned features and class edges match the truth.

All functions take numpy arrays or torch tensors and return Python floats (or small frozen
dataclasses); bad input is a ValueError naming the argument. Metrics over feature maps are
accumulators (`update` per batch, `compute` at the end), since real maps do not fit in memory.
"""

from .classification import accuracy, nf_features, per_class
from .concept_matching import UNMATCHED, ConceptMatch, concept_auc, match_features_to_concepts
from .contrastiveness import contrastiveness, gmm_overlaps
from .diversity import SIDAccumulator
from .edges import EdgeScores, edge_scores
from .feature_statistics import class_independence, correlation
from .ground_truth import GroundTruthReport
from .grounding import class_similarity_from_attributes, structural_grounding
from .paper_metrics import PaperMetrics
from .pointing import ConceptInstance, PointingGame, PointingResult, pointing_game

__all__ = [
    "UNMATCHED",
    "ConceptInstance",
    "ConceptMatch",
    "EdgeScores",
    "GroundTruthReport",
    "PaperMetrics",
    "PointingGame",
    "PointingResult",
    "SIDAccumulator",
    "accuracy",
    "class_independence",
    "class_similarity_from_attributes",
    "concept_auc",
    "contrastiveness",
    "correlation",
    "edge_scores",
    "gmm_overlaps",
    "match_features_to_concepts",
    "nf_features",
    "per_class",
    "pointing_game",
    "structural_grounding",
]
