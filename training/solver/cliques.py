"""Cliques of a given size in a graph: a fast heuristic and an exact, budgeted decision.

The redundancy threshold τ (docs/method.md §3) asks, for a candidate threshold, whether some n
features are pairwise "compatible" — an n-clique of the compatibility graph. The heuristic
proves "yes" by exhibiting a clique; the exact search proves "no" by exhausting a branch and
bound whose pruning is a greedy colouring (a clique needs a different colour per member).
Graphs are dense boolean adjacency matrices; the exact search uses Python integers as bitsets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


def core_vertices(adjacency: np.ndarray, min_degree: int) -> np.ndarray:
    """The vertices of the `min_degree`-core (every n-clique lies inside the (n−1)-core)."""
    alive = np.ones(len(adjacency), dtype=bool)
    degree = adjacency.sum(axis=1)
    while True:
        drop = alive & (degree < min_degree)
        if not drop.any():
            return np.flatnonzero(alive)
        alive &= ~drop
        degree = degree - adjacency[:, drop].sum(axis=1)


def greedy_clique(
    adjacency: np.ndarray, size: int, starts: int = 16, seed: int = 0
) -> np.ndarray | None:
    """Try to find a clique of `size` vertices; None if none of the greedy runs reach it.

    Each run grows a clique from a start vertex, always adding the candidate with the most
    neighbours among the remaining candidates (so the candidate set shrinks slowly); starts are
    the highest-degree vertices, then random ones.
    """
    num = len(adjacency)
    if size <= 1:
        return np.arange(min(size, num))
    adj = adjacency.astype(np.float32)
    degree = adj.sum(axis=1)
    rng = np.random.default_rng(seed)
    by_degree = np.argsort(-degree, kind="stable")
    order = list(by_degree[: max(1, starts // 2)]) + list(
        rng.choice(num, size=min(num, starts), replace=False)
    )
    best: list[int] = []
    for start in order[:starts]:
        clique = [int(start)]
        candidates = adjacency[start].copy()
        while candidates.any() and len(clique) + candidates.sum() >= size:
            inside = adj @ candidates.astype(np.float32)
            inside[~candidates] = -1.0
            pick = int(np.argmax(inside))
            clique.append(pick)
            candidates &= adjacency[pick]
        if len(clique) > len(best):
            best = clique
        if len(best) >= size:
            return np.array(sorted(best[:size]))
    return None


@dataclass(frozen=True)
class CliqueSearch:
    """Outcome of the exact decision "is there a clique of `size` vertices?"."""

    found: bool | None  #: True (clique below), False (proved none), None (budget ran out)
    clique: np.ndarray | None
    nodes: int


def _colour_bound(candidates: int, neighbours: list[int]) -> tuple[list[int], list[int]]:
    """Greedy sequential colouring of the candidate bitset: vertices in colour order, colours."""
    order: list[int] = []
    colours: list[int] = []
    uncoloured = candidates
    colour = 0
    while uncoloured:
        colour += 1
        q = uncoloured
        while q:
            low = q & -q
            v = low.bit_length() - 1
            q &= ~neighbours[v]
            q &= ~low
            uncoloured &= ~low
            order.append(v)
            colours.append(colour)
    return order, colours


def find_clique_exact(
    adjacency: np.ndarray, size: int, *, node_limit: int = 200_000, time_limit: float = 30.0
) -> CliqueSearch:
    """Decide exactly whether a clique of `size` vertices exists (branch and bound, MCQ-style).

    The graph is first reduced to its (size−1)-core. A branch adds vertices in reverse colouring
    order and is cut when the clique so far plus the colours left cannot reach `size`.
    """
    num = len(adjacency)
    if size <= 1:
        return CliqueSearch(found=size <= num, clique=np.arange(min(size, num)), nodes=0)
    keep = core_vertices(adjacency, size - 1)
    if len(keep) < size:
        return CliqueSearch(found=False, clique=None, nodes=0)
    sub = adjacency[np.ix_(keep, keep)]
    # degeneracy-like order: high degree first tends to find cliques early
    order = np.argsort(-sub.sum(axis=1), kind="stable")
    sub = sub[np.ix_(order, order)]
    keep = keep[order]
    neighbours = [
        int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little") for row in sub
    ]
    deadline = time.monotonic() + time_limit
    nodes = 0

    class _Stop(Exception):
        pass

    def expand(clique: list[int], candidates: int) -> list[int] | None:
        nonlocal nodes
        nodes += 1
        if nodes > node_limit or (nodes % 1024 == 0 and time.monotonic() > deadline):
            raise _Stop
        vertices, colours = _colour_bound(candidates, neighbours)
        for i in range(len(vertices) - 1, -1, -1):
            if len(clique) + colours[i] < size:
                return None
            v = vertices[i]
            clique.append(v)
            if len(clique) >= size:
                return clique
            found = expand(clique, candidates & neighbours[v])
            if found is not None:
                return found
            clique.pop()
            candidates &= ~(1 << v)
        return None

    try:
        found = expand([], (1 << len(keep)) - 1)
    except _Stop:
        return CliqueSearch(found=None, clique=None, nodes=nodes)
    except RecursionError:  # cliques deeper than Python's stack: treat as an exhausted budget
        return CliqueSearch(found=None, clique=None, nodes=nodes)
    if found is None:
        return CliqueSearch(found=False, clique=None, nodes=nodes)
    return CliqueSearch(found=True, clique=np.sort(keep[found]), nodes=nodes)
