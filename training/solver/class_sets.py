"""The best W for a fixed selection: each class's k best features, made distinct optimally.

Without the uniqueness constraint the best W is, per class, its k selected features with the
largest A (docs/method.md §3). When two classes share that set, the best distinct assignment is an
assignment problem: classes on one side, k-subsets of the selection on the other, value =
Σ A over the subset. We give each class its L best k-subsets (best-first enumeration), solve
the rectangular assignment on the union of those lists with exact values, and check a
certificate of global optimality: if every class has an unassigned subset in its own list, no
subset outside the lists can do better (LP duality: that class's dual is at least the value of
its free subset, which beats every subset it did not list). Otherwise the lists of the classes
without a free subset are doubled and it is solved again.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from scipy.optimize import linear_sum_assignment


def top_subsets(values: np.ndarray, k: int, count: int) -> list[tuple[int, ...]]:
    """The `count` k-subsets (index tuples, sorted) with the largest sums, best first."""
    order = np.argsort(-values, kind="stable")
    sorted_values = values[order]
    m = len(values)
    count = min(count, math.comb(m, k))
    start = tuple(range(k))
    heap = [(-float(sorted_values[list(start)].sum()), start)]
    seen = {start}
    out: list[tuple[int, ...]] = []
    while heap and len(out) < count:
        neg, positions = heapq.heappop(heap)
        out.append(tuple(sorted(int(order[p]) for p in positions)))
        for i in range(k):  # move one member one rank down, if that rank is free
            nxt = positions[i] + 1
            if nxt < m and (i == k - 1 or nxt < positions[i + 1]):
                child = positions[:i] + (nxt,) + positions[i + 1 :]
                if child not in seen:
                    seen.add(child)
                    heapq.heappush(
                        heap, (neg + float(sorted_values[positions[i]] - sorted_values[nxt]), child)
                    )
    return out


def best_class_sets(values: np.ndarray, k: int) -> tuple[np.ndarray, bool]:
    """Best binary [C, n] weight with k ones per row and distinct rows, for values [n, C].

    Returns (weight, repaired): `repaired` says the classes' individual best sets collided and
    the assignment problem above decided.
    """
    n, C = values.shape
    top = np.argsort(-values, axis=0, kind="stable")[:k]  # [k, C]
    weight = np.zeros((C, n), dtype=np.int8)
    weight[np.arange(C)[None, :], top] = 1
    if len({tuple(np.flatnonzero(row)) for row in weight}) == C:
        return weight, False

    budget = np.full(C, 2)
    while True:
        lists = [top_subsets(values[:, c], k, int(budget[c])) for c in range(C)]
        columns = sorted({s for lst in lists for s in lst})
        index = {s: j for j, s in enumerate(columns)}
        membership = np.zeros((len(columns), n))
        for j, s in enumerate(columns):
            membership[j, list(s)] = 1.0
        gain = (membership @ values).T  # [C, columns]
        rows, cols = linear_sum_assignment(gain, maximize=True)
        used = np.zeros(len(columns), dtype=bool)
        used[cols] = True
        no_free = [
            c
            for c in range(C)
            if all(used[index[s]] for s in lists[c]) and len(lists[c]) < math.comb(n, k)
        ]
        if not no_free:
            weight = np.zeros((C, n), dtype=np.int8)
            for c, j in zip(rows, cols):
                weight[c, list(columns[j])] = 1
            return weight, True
        budget[no_free] *= 2
