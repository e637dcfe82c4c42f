"""All ground-truth concept results of one model on a known-concept dataset, in one record."""

from __future__ import annotations

from dataclasses import dataclass

from .concept_matching import ConceptMatch
from .edges import EdgeScores
from .pointing import PointingResult


@dataclass(frozen=True)
class GroundTruthReport:
    """Feature → concept matching, class → concept edge scores and the pointing game."""

    matching: ConceptMatch
    edges: EdgeScores
    pointing: PointingResult

    def to_dict(self) -> dict:
        return {
            "matching": self.matching.to_dict(),
            "edges": self.edges.to_dict(),
            "pointing": self.pointing.to_dict(),
        }
