"""The QPM assignment (docs/method.md §3) solved with SCIP: τ, a heuristic incumbent, a proven bound.

`solve_assignment` is the entry point; `python -m training solver-bench` measures it on
synthetic instances with the paper's shapes.
"""

from training.solver.solve import STATUSES, AssignmentResult, NoFeasibleAssignment, solve_assignment

__all__ = ["STATUSES", "AssignmentResult", "NoFeasibleAssignment", "solve_assignment"]
