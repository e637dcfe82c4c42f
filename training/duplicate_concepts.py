"""Why a QPM on the known-concept data spends two features on one concept (docs/method.md §3, §6).

After the evaluation has matched every selected feature to a true concept (by AUC on the
training set, `training.metrics.concept_matching`), a class whose k features include two that
match the same concept has learned k − 1 concepts, and since the n features are as many as
the true concepts, some true concept is then matched by no selected feature. This module
measures both sides of that trade in the assignment's own terms:

- each **duplicate pair** (f, g) of a class c: its redundancy R[f, g] against τ (is the pair
  penalised at all?), the penalty w_R·R̃[f, g] the objective charges for it, and the
  similarity α·A[·, c] each feature earns in that class, with α = 1000/(k·C);
- each **missing concept**: the dense channel that detects it best (its AUC, whether the
  solver had selected it), and the best swap of one duplicated feature for that channel —
  how much similarity (Z_A + Z_B) the swap loses and how much unweighted redundancy Z_R it
  saves, so `break_even_weight` = the redundancy weight w_R at which the objective would
  prefer the swap.

Everything is read from a finished run folder (statistics, assignment, the checkpoint's
metrics) plus one pass of the dense model over the training set for the dense channels'
AUCs, which is cached in RUN/concept_analysis/ under the dense stage's key.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .metrics import UNMATCHED, concept_auc
from .stage_cache import read_stage_record, write_json

#: α of the paper's CUB recipe (C = 200 classes, k = 5): 1000 / (5·200)
PAPER_ALPHA = 1000.0 / (5 * 200)
#: where the dense channels' concept AUCs are cached inside a run folder
ANALYSIS_DIR = "concept_analysis"


def duplicate_groups(
    weight: np.ndarray, feature_concept: np.ndarray
) -> list[tuple[int, int, list[int]]]:
    """(class, concept, positions of the class's features matched to it) for every class that
    uses two or more features matched to one concept; positions index the selected features."""
    out = []
    for c, row in enumerate(np.asarray(weight) > 0):
        positions = np.flatnonzero(row)
        concepts = np.asarray(feature_concept)[positions]
        for concept in np.unique(concepts):
            if concept == UNMATCHED:
                continue
            same = positions[concepts == concept]
            if len(same) > 1:
                out.append((c, int(concept), [int(j) for j in same]))
    return out


def missing_concepts(feature_concept: np.ndarray, class_concepts: np.ndarray) -> list[int]:
    """True concepts (used by at least one class) that no selected feature is matched to."""
    used = np.flatnonzero(np.asarray(class_concepts).any(axis=0))
    matched = {int(c) for c in np.asarray(feature_concept) if c != UNMATCHED}
    return [int(k) for k in used if int(k) not in matched]


@dataclass(frozen=True)
class DuplicatePair:
    """Two features of one class matched to one concept, in the assignment's terms."""

    class_index: int
    class_name: str
    concept: int
    concept_name: str
    channels: tuple[int, int]  #: dense channel indices (stronger AUC first)
    auc: tuple[float, float]  #: their AUC for the concept (training set)
    redundancy: float  #: R[f, g] (docs/method.md §2)
    tau: float  #: the threshold: the pair is penalised when R ≥ τ
    penalised: bool
    penalty: float  #: w_R·R̃[f, g], what Z_R charges for having both
    similarity: tuple[float, float]  #: α·A[f, c] and α·A[g, c], what each earns in class c

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MissingConcept:
    """A true concept no selected feature matches, and what recovering it would cost."""

    concept: int
    concept_name: str
    classes: tuple[int, ...]  #: the classes that have it
    best_selected_auc: float  #: the best AUC any selected feature has for it
    dense_channel: int  #: the dense channel with the highest AUC for it
    dense_auc: float
    dense_channel_selected: bool
    swap_out: int | None  #: the duplicated channel whose swap for dense_channel costs least
    similarity_loss: float | None  #: (Z_A + Z_B) lost by that swap (negative: gained)
    redundancy_saved: float | None  #: unweighted Z_R saved by it (R̃ summed, w_R = 1)
    break_even_weight: float | None  #: w_R above which the swap improves the objective (None:
    #: none; 0: it improves it even without Z_R)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DuplicateReport:
    """Duplicates and missing concepts of one run, with the scale they are judged at."""

    alpha: float  #: 1000/(k·C) of this run
    paper_alpha: float  #: 1000/(5·200), the paper's CUB recipe
    redundancy_weight: float  #: w_R the run was solved with
    tau: float
    penalised_pairs: int
    max_penalty: float  #: the largest w_R·R̃ of any pair: what one redundant pair can cost at most
    duplicate_classes: int  #: classes with two features of one concept
    pairs: tuple[DuplicatePair, ...]
    missing: tuple[MissingConcept, ...]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["pairs"] = [p.to_dict() for p in self.pairs]
        out["missing"] = [m.to_dict() for m in self.missing]
        return out


def dense_concept_auc(run_dir: Path, ctx=None) -> np.ndarray:
    """AUC [F, K] of every dense channel for every concept on the training set, -1 where it is
    undefined; cached in RUN/concept_analysis/dense_auc.json under the dense stage's key.
    `ctx` is the run's StageContext, needed only when the cache is missing or stale."""
    record = read_stage_record(run_dir, "dense")
    key = None if record is None else record.get("key")
    cache = Path(run_dir) / ANALYSIS_DIR / "dense_auc.json"
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("dense_key") == key:
            return np.asarray(data["auc"], dtype=np.float64)
    if ctx is None:
        raise ValueError(f"{cache}: missing or stale, and no run context to compute it")
    from .model_metrics import collect_features

    features, _ = collect_features(
        ctx.load_dense(), ctx.loader("train"), ctx.device, "dense: concept AUC"
    )
    auc = concept_auc(features, ctx.data.splits.ground_truth.presence("train"))
    auc = np.where(np.isfinite(auc), auc, -1.0)  # undefined (concept in every image or none): -1
    write_json(cache, {"dense_key": key, "auc": auc.tolist()})
    return auc


def explain_duplicates(
    *,
    A: np.ndarray,
    R: np.ndarray,
    b: np.ndarray,
    assignment: dict,
    feature_concept: np.ndarray,
    feature_auc: np.ndarray,
    class_concepts: np.ndarray,
    class_names: list[str],
    concept_names: tuple[str, ...],
    dense_auc: np.ndarray | None,
) -> DuplicateReport:
    """The report for one run: `assignment` is its assignment/result.json, `feature_concept`
    and `feature_auc` [n, K] the checkpoint's matching of the selected features."""
    from .solver.oracle import SelectionOracle
    from .solver.problem import AssignmentProblem

    selected = np.asarray(assignment["selected"], dtype=np.int64)
    weight = np.asarray(assignment["weight"])
    n, k = len(selected), int(weight.sum(axis=1)[0])
    tau = float(assignment["threshold"]["tau"])
    w_r = float(assignment.get("redundancy_weight", 1.0))
    problem = AssignmentProblem.build(A, R, b, n, k, tau=tau, redundancy_weight=w_r)
    unweighted = AssignmentProblem.build(A, R, b, n, k, tau=tau)
    alpha = problem.alpha
    upper = problem.R

    pairs = []
    groups = duplicate_groups(weight, feature_concept)
    for c, concept, positions in groups:
        ranked = sorted(positions, key=lambda j: -feature_auc[j, concept])
        j1 = ranked[0]  # the best detector, paired with each further one
        for j2 in ranked[1:]:
            f, g = int(selected[j1]), int(selected[j2])
            r = float(upper[min(f, g), max(f, g)])
            pairs.append(
                DuplicatePair(
                    class_index=c,
                    class_name=class_names[c],
                    concept=concept,
                    concept_name=concept_names[concept],
                    channels=(f, g),
                    auc=(float(feature_auc[j1, concept]), float(feature_auc[j2, concept])),
                    redundancy=r,
                    tau=tau,
                    penalised=bool(r >= tau and r > 0),
                    penalty=float(problem.penalty[f, g]),
                    similarity=(float(alpha * A[f, c]), float(alpha * A[g, c])),
                )
            )

    # the weaker feature of each duplicate pair is what a swap would give up
    extras = sorted({p.channels[1] for p in pairs})
    plain = SelectionOracle(unweighted)
    current = plain(selected)
    missing = []
    for concept in missing_concepts(feature_concept, class_concepts):
        aucs = feature_auc[:, concept]
        best_selected = float(np.nanmax(aucs)) if np.isfinite(aucs).any() else math.nan
        if dense_auc is None:
            channel, channel_auc = -1, math.nan
        else:
            column = np.where(np.isfinite(dense_auc[:, concept]), dense_auc[:, concept], -1.0)
            channel, channel_auc = int(np.argmax(column)), float(column.max())
        swap = _best_swap(plain, current, selected, extras, channel) if channel >= 0 else None
        missing.append(
            MissingConcept(
                concept=concept,
                concept_name=concept_names[concept],
                classes=tuple(int(c) for c in np.flatnonzero(class_concepts[:, concept])),
                best_selected_auc=best_selected,
                dense_channel=channel,
                dense_auc=channel_auc,
                dense_channel_selected=bool(channel in set(selected.tolist())),
                swap_out=None if swap is None else swap[0],
                similarity_loss=None if swap is None else swap[1],
                redundancy_saved=None if swap is None else swap[2],
                break_even_weight=None if swap is None else swap[3],
            )
        )
    nonzero = problem.penalty[problem.penalty > 0]
    return DuplicateReport(
        alpha=alpha,
        paper_alpha=PAPER_ALPHA,
        redundancy_weight=w_r,
        tau=tau,
        penalised_pairs=int(problem.threshold.num_penalised_pairs),
        max_penalty=float(nonzero.max()) if nonzero.size else 0.0,
        duplicate_classes=len({c for c, _, _ in groups}),
        pairs=tuple(pairs),
        missing=tuple(missing),
    )


def _best_swap(plain, current, selected, extras, channel) -> tuple | None:
    """(channel out, similarity lost, redundancy saved, break-even w_R) of the cheapest swap
    of one duplicated channel for `channel`, each selection with its best class sets."""
    if channel in set(selected.tolist()) or not extras:
        return None
    best = None
    for out in extras:
        swapped = plain([f for f in selected.tolist() if f != out] + [channel])
        lost = (current.terms.z_a + current.terms.z_b) - (swapped.terms.z_a + swapped.terms.z_b)
        saved = current.terms.z_r - swapped.terms.z_r
        if lost <= 0:
            weight = 0.0  # better even without any redundancy term
        elif saved > 0:
            weight = lost / saved
        else:
            weight = math.inf  # the swap adds redundancy: no weight makes it pay
        if best is None or weight < best[3]:
            best = (int(out), float(lost), float(saved), weight)
    if best is not None and math.isinf(best[3]):
        best = (*best[:3], None)  # JSON has no infinity: None = no weight makes it pay
    return best


@dataclass(frozen=True)
class SweepPoint:
    """One redundancy weight's assignment on a run's statistics, judged before fine-tuning:
    each selected channel matched to its concept by the dense model's AUCs."""

    redundancy_weight: float
    edge_f1: float
    edge_precision: float
    edge_recall: float
    duplicate_classes: int
    missing_concepts: int
    z_a: float  #: the similarity term of the assignment (how well the classes fit)
    z_r: float  #: its redundancy term, unweighted (Σ R̃ over selected pairs)
    selected: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def sweep_redundancy_weight(
    A: np.ndarray,
    R: np.ndarray,
    b: np.ndarray,
    std: np.ndarray,
    n: int,
    k: int,
    *,
    weights: list[float],
    dense_auc: np.ndarray,
    class_concepts: np.ndarray,
    time_limit: float,
    seed: int = 0,
) -> list[SweepPoint]:
    """Solve the assignment once per weight w_R, as the assignment stage does (live features
    only), and score it against the true concepts through the dense channels' own matching
    (fine-tuning moves features, so the fitted run's numbers differ; this ranks weights in
    seconds instead of a fine-tuning per weight)."""
    from .metrics import edge_scores
    from .stages.assignment import solve_on_live_features

    column = np.where(np.isfinite(dense_auc), dense_auc, -1.0)
    points = []
    for w in weights:
        result, live = solve_on_live_features(
            A, R, b, std, n, k, time_limit=time_limit, mip_gap=0.0, seed=seed, redundancy_weight=w
        )
        selected = live[np.asarray(result.selected)]
        concept = np.argmax(column[selected], axis=1)
        scores = edge_scores(result.weight, concept, class_concepts)
        z_r = (
            result.objective_terms.z_r / w
            if w > 0
            else _unweighted_z_r(A[live], R[np.ix_(live, live)], b[live], n, k, result)
        )
        points.append(
            SweepPoint(
                redundancy_weight=float(w),
                edge_f1=scores.f1,
                edge_precision=scores.precision,
                edge_recall=scores.recall,
                duplicate_classes=len({c for c, _, _ in duplicate_groups(result.weight, concept)}),
                missing_concepts=len(missing_concepts(concept, class_concepts)),
                z_a=result.objective_terms.z_a,
                z_r=z_r,
                selected=tuple(int(f) for f in selected),
            )
        )
    return points


def _unweighted_z_r(A, R, b, n, k, result) -> float:
    from .solver.problem import AssignmentProblem

    problem = AssignmentProblem.build(A, R, b, n, k, tau=result.tau)
    return problem.terms(result.selected, result.weight).z_r
