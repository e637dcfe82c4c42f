"""The whole model at a glance: the class × feature assignment matrix, clustered so that classes
with similar feature sets sit together and a shared feature shows as a column of marks.

Needs only config.json (a GlobalExplainer), so it can be drawn before any weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import QPMConfig
from ..errors import MissingDependencyError
from ..explain import GlobalExplainer, InterpretableModel
from .panels import FOOTNOTE_LINE_INCHES, add_footnote, footnote_text, wrap
from .render import new_figure

PURPOSE = "qpm_zoo.viz.assignment_figure (qpm assignment)"
#: Up to this many classes (features) the rows (columns) are labelled with their names.
MAX_LABELS = 50
#: Matrix colours: a QPM class uses a feature, and the empty cell.
USED_COLOUR = "#24466f"
EMPTY_COLOUR = "white"
MODEL_NAMES = {"qpm": "QPM", "qsenn": "Q-SENN"}


@dataclass(frozen=True)
class AssignmentOrder:
    """Row and column order of the matrix and the class tree that gave the row order."""

    classes: np.ndarray  #: class indices, top to bottom
    features: np.ndarray  #: feature indices (0..n-1), left to right
    class_linkage: np.ndarray | None  #: scipy linkage of the classes (None below 2 classes)


def assignment_order(weights: np.ndarray) -> AssignmentOrder:
    """Cluster classes (rows) and features (columns) of a [C, n] weight matrix.

    Distance: Jaccard on the signed sets (two entries agree when both are non-zero with the same
    sign), average linkage, leaves ordered optimally so that neighbours are as similar as
    possible. Columns are turned to run along the rows' order (a diagonal from the top left);
    features no class uses come last.
    """
    weights = np.asarray(weights, dtype=np.float64)
    classes, class_linkage = _cluster(weights)
    used = np.flatnonzero(np.any(weights != 0, axis=0))
    unused = np.flatnonzero(~np.any(weights != 0, axis=0))
    columns, _ = _cluster(weights[:, used].T)
    features = used[columns]
    if len(features) > 1:
        # Where, in the rows' order, each feature's classes sit on average.
        position = np.empty(len(classes))
        position[classes] = np.arange(len(classes))
        centre = np.array([position[weights[:, j] != 0].mean() for j in features])
        if np.corrcoef(np.arange(len(features)), centre)[0, 1] < 0:
            features = features[::-1]
    return AssignmentOrder(classes, np.concatenate([features, unused]).astype(int), class_linkage)


def _cluster(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if len(rows) < 2:
        return np.arange(len(rows)), None
    hierarchy, distance = _scipy()
    condensed = distance.squareform(signed_jaccard(rows), checks=False)
    linkage = hierarchy.linkage(condensed, method="average")
    linkage = hierarchy.optimal_leaf_ordering(linkage, condensed)
    return hierarchy.leaves_list(linkage), linkage


def signed_jaccard(rows: np.ndarray) -> np.ndarray:
    """[m, m] distances 1 − |agreeing non-zeros| / |non-zeros of either| (0 for two empty rows)."""
    positive, negative = (rows > 0).astype(np.float64), (rows < 0).astype(np.float64)
    nonzero = positive + negative
    agree = positive @ positive.T + negative @ negative.T
    count = nonzero.sum(axis=1)
    union = count[:, None] + count[None, :] - nonzero @ nonzero.T
    similarity = np.divide(agree, union, out=np.ones_like(agree), where=union > 0)
    out = 1.0 - similarity
    np.fill_diagonal(out, 0.0)
    return np.clip(out, 0.0, 1.0)


def _scipy() -> tuple[Any, Any]:
    try:
        from scipy.cluster import hierarchy
        from scipy.spatial import distance
    except ImportError:
        raise MissingDependencyError("scipy", "viz", PURPOSE) from None
    return hierarchy, distance


def assignment_figure(model: InterpretableModel | QPMConfig) -> Any:
    """A matplotlib Figure of the class × feature assignment of a model (or its QPMConfig).

    Rows are classes, columns the n selected features, ordered by `assignment_order`; a bar
    above each column counts the classes using that feature, a tree on the left shows how the
    classes cluster. QPM cells are used / not used; Q-SENN cells show the signed weight.
    Classes and features are labelled by name up to MAX_LABELS of them, beyond that ticks only.
    """
    if isinstance(model, QPMConfig):
        model = GlobalExplainer(model)
    config = model.config
    weights = np.asarray(model.class_weights, dtype=np.float64)
    num_classes, n = weights.shape
    order = assignment_order(weights)
    matrix = weights[np.ix_(order.classes, order.features)]
    class_names = [model.label_names[c] for c in order.classes]
    feature_names = [config.feature_name(int(j)) for j in order.features]
    label_rows, label_columns = num_classes <= MAX_LABELS, n <= MAX_LABELS

    cell_h = float(np.clip(10.0 / num_classes, 0.08, 0.25))
    cell_w = float(np.clip(10.0 / n, 0.12, 0.3))
    row_font = float(np.clip(cell_h * 72 * 0.7, 5.5, 9.0))
    column_font = float(np.clip(cell_w * 72 * 0.7, 5.5, 9.0))
    row_labels = [wrap(name, 32, 1) for name in class_names]
    column_labels = [wrap(name, 28, 1) for name in feature_names]
    label_w = _text_inches(row_labels, row_font) if label_rows else 0.2
    label_h = _text_inches(column_labels, column_font) if label_columns else 0.2
    signed = config.model_type != "qpm"
    tree_w, bars_h, side = 1.0, 0.9, (0.45 if signed else 0.0)
    fig_width = max(tree_w + n * cell_w + label_w + side + 0.4, 6.5)
    legend = footnote_text(
        "A column with several marks is a feature those classes share; neighbouring rows differ "
        "in few features.",
        fig_width,
    )
    fig = new_figure(
        PURPOSE,
        fig_width,
        max(1.1 + bars_h + num_classes * cell_h + label_h + 0.6, 4.5)
        + legend.count("\n") * FOOTNOTE_LINE_INCHES,
    )
    grid = fig.add_gridspec(
        2,
        3 if signed else 2,
        width_ratios=[tree_w, n * cell_w + label_w] + ([side] if signed else []),
        height_ratios=[bars_h, num_classes * cell_h + label_h],
    )
    ax = fig.add_subplot(grid[1, 1])
    bars = fig.add_subplot(grid[0, 1], sharex=ax)
    tree = fig.add_subplot(grid[1, 0], sharey=ax)
    fig.add_subplot(grid[0, 0]).set_axis_off()

    _draw_matrix(fig, grid, ax, matrix, signed)
    _axis_labels(
        ax,
        row_labels if label_rows else None,
        column_labels if label_columns else None,
        row_font,
        column_font,
    )
    ax.set_xlabel(f"{n} features (clustered order)", fontsize=9)
    ax.yaxis.set_label_position("right")
    ax.set_ylabel(f"{num_classes} classes (clustered order)", fontsize=9)
    _draw_usage(bars, matrix)
    _draw_tree(tree, order.class_linkage)
    per_class = "k" if config.model_type == "qpm" else "on average k"
    fig.suptitle(
        f"{MODEL_NAMES.get(config.model_type, config.model_type)} class-feature assignment: "
        f"{num_classes} classes × {n} features, {per_class} = {config.k} per class\n"
        "rows and columns ordered by clustering (average linkage, Jaccard distance)",
        fontsize=10,
    )
    add_footnote(fig, legend)
    return fig


def _draw_matrix(fig: Any, grid: Any, ax: Any, matrix: np.ndarray, signed: bool) -> None:
    """The cells: used / unused for QPM; for Q-SENN the signed weight, with a colour bar."""
    if signed:
        top = float(np.abs(matrix).max()) or 1.0
        image = ax.imshow(
            matrix, cmap="RdBu_r", vmin=-top, vmax=top, aspect="auto", interpolation="nearest"
        )
        bar = fig.colorbar(image, cax=fig.add_subplot(grid[1, 2]))
        bar.set_label("class weight on the feature", fontsize=8)
        fig.add_subplot(grid[0, 2]).set_axis_off()
    else:
        from matplotlib.colors import ListedColormap

        ax.imshow(
            matrix != 0,
            cmap=ListedColormap([EMPTY_COLOUR, USED_COLOUR]),
            vmin=0,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
        )
    rows, columns = matrix.shape
    if rows <= 80 and columns <= 80:  # lines between cells while cells are big enough to count
        ax.set_xticks(np.arange(-0.5, columns, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.5)
        ax.tick_params(which="minor", length=0)


def _draw_usage(bars: Any, matrix: np.ndarray) -> None:
    """How many classes use each feature, above its column."""
    bars.bar(np.arange(matrix.shape[1]), (matrix != 0).sum(axis=0), width=0.8, color="0.45")
    # Labels on the right, like the class names: on the left they would push the matrix away
    # from the class tree.
    bars.yaxis.tick_right()
    bars.yaxis.set_label_position("right")
    bars.set_ylabel("classes\nusing it", fontsize=8)
    bars.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
    bars.tick_params(axis="y", labelsize=7)
    bars.spines[["top", "left"]].set_visible(False)


def _text_inches(labels: list[str], font: float) -> float:
    """Rough width of the longest label (an average glyph is ~0.6 em wide)."""
    return max((len(s) for s in labels), default=0) * font * 0.6 / 72 + 0.15


def _axis_labels(
    ax: Any, rows: list[str] | None, columns: list[str] | None, row_font: float, column_font: float
) -> None:
    ax.yaxis.tick_right()
    ax.set_yticks(np.arange(len(rows)) if rows else [])
    if rows:
        ax.set_yticklabels(rows, fontsize=row_font)
    ax.set_xticks(np.arange(len(columns)) if columns else [])
    if columns:
        ax.set_xticklabels(columns, fontsize=column_font, rotation=90)


def _draw_tree(ax: Any, linkage: np.ndarray | None) -> None:
    """The class dendrogram, leaves aligned with the matrix rows (leaf i at row i)."""
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(which="both", left=False, labelleft=False, bottom=False, labelbottom=False)
    if linkage is None:
        return
    hierarchy, _ = _scipy()
    tree = hierarchy.dendrogram(linkage, orientation="left", no_plot=True)
    from matplotlib.collections import LineCollection

    # scipy puts leaf i at height 10·i + 5; the matrix has row i at i (top to bottom).
    links = [
        np.column_stack([xs, (np.asarray(ys) - 5.0) / 10.0])
        for ys, xs in zip(tree["icoord"], tree["dcoord"])
    ]
    ax.add_collection(LineCollection(links, colors="0.35", linewidths=0.8))
    height = float(np.max(tree["dcoord"])) or 1.0
    ax.set_xlim(height * 1.04, 0.0)  # root on the left, leaves next to the matrix
