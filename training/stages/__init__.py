"""The pipeline's stages, one module each: a function of a StageContext that writes into the
stage's folder and returns a typed summary. training.pipeline orders, caches and resumes them."""

from .assignment import AssignmentSummary, SolvedAssignment
from .context import RunData, StageContext, StageSummary
from .dense import DenseSummary
from .evaluation import EvaluationSummary, evaluate_checkpoint
from .finetune import FinetuneSummary
from .qsenn import QSENNRound, QSENNSummary
from .statistics import StatisticsSummary

__all__ = [
    "AssignmentSummary",
    "DenseSummary",
    "EvaluationSummary",
    "FinetuneSummary",
    "QSENNRound",
    "QSENNSummary",
    "RunData",
    "SolvedAssignment",
    "StageContext",
    "StageSummary",
    "StatisticsSummary",
    "evaluate_checkpoint",
]
