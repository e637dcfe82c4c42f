"""The paper's metric table for one model (docs/method.md §6), under the names the papers print."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperMetrics:
    """One model's row of the papers' tables; None = not computed (e.g. no attribute table)."""

    accuracy: float  #: top-1, a fraction in [0, 1] (the papers print percent)
    nf_features: int
    per_class: float
    sid: float  #: SID@sid_k, in [1/k, 1]
    class_independence: float
    correlation: float
    contrastiveness: float | None = None  #: None when skipped (the authors skip dense models)
    structural_grounding: float | None = None  #: needs a class attribute table (CUB)
    sid_k: int = 5

    def to_dict(self) -> dict:
        return {
            "Accuracy": self.accuracy,
            "NFfeatures": self.nf_features,
            "PerClass": self.per_class,
            f"SID@{self.sid_k}": self.sid,
            "Class-Independence": self.class_independence,
            "Contrastiveness": self.contrastiveness,
            "Correlation": self.correlation,
            "Structural Grounding": self.structural_grounding,
        }
