"""Multinomial logistic regression with an elastic-net penalty, solved by FISTA (full batch).

    minimise  CE(Z Wᵀ + b, y) + λ · ( α · P(W) + (1 − α)/2 · ‖W‖²_F )

with P(W) = Σ |W| (sparse weights) or Σ_f ‖W[:, f]‖₂ (group sparsity: whole features enter or
leave). The bias is not penalised. Q-SENN fits these on precomputed, normalised features, which
fit in memory (N × F floats), so a deterministic full-batch solver replaces glm-saga's SAGA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GLMFit:
    weight: torch.Tensor  #: [C, F]
    bias: torch.Tensor  #: [C]
    objective: float
    iterations: int
    converged: bool


def cross_entropy_grad(
    Z: torch.Tensor, Y: torch.Tensor, W: torch.Tensor, b: torch.Tensor
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and its gradients w.r.t. W [C, F] and b [C]; Y is one-hot [N, C]."""
    logits = Z @ W.T + b
    log_p = torch.log_softmax(logits, dim=1)
    loss = -(Y * log_p).sum() / Z.shape[0]
    residual = (log_p.exp() - Y) / Z.shape[0]  # [N, C]
    return float(loss), residual.T @ Z, residual.sum(dim=0)


def penalty(W: torch.Tensor, lam: float, alpha: float, group: bool) -> float:
    sparse = W.norm(dim=0).sum() if group else W.abs().sum()
    return float(lam * (alpha * sparse + 0.5 * (1 - alpha) * (W * W).sum()))


def prox(V: torch.Tensor, step: float, lam: float, alpha: float, group: bool) -> torch.Tensor:
    """prox of step·λ(α·P + (1−α)/2‖·‖²): soft-threshold (per entry or per feature column),
    then shrink by 1 / (1 + step·λ(1−α))."""
    threshold = step * lam * alpha
    if group:
        norms = V.norm(dim=0, keepdim=True)
        shrunk = V * torch.clamp(1 - threshold / norms.clamp_min(1e-12), min=0)
    else:
        shrunk = torch.sign(V) * torch.clamp(V.abs() - threshold, min=0)
    return shrunk / (1 + step * lam * (1 - alpha))


def fit_elastic_net(
    Z: torch.Tensor,
    Y: torch.Tensor,
    lam: float,
    alpha: float,
    *,
    group: bool = False,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    step: float | None = None,
    max_iter: int = 2000,
    tol: float = 1e-6,
) -> GLMFit:
    """FISTA with backtracking from the warm start (`weight`, `bias`); stops when the objective's
    relative decrease over 10 iterations is below `tol`."""
    N, F = Z.shape
    C = Y.shape[1]
    W = torch.zeros(C, F, dtype=Z.dtype) if weight is None else weight.clone()
    b = torch.zeros(C, dtype=Z.dtype) if bias is None else bias.clone()
    if step is None:
        # 1 / L for the smooth part: softmax CE has Hessian ≤ ½‖[Z, 1]‖² / N
        step = 1.0 / (
            0.5 * (float(torch.linalg.matrix_norm(Z, ord=2)) ** 2 + N) / N
            + lam * (1 - alpha)
            + 1e-12
        )
    W_prev, b_prev = W.clone(), b.clone()
    t = 1.0
    history: list[float] = []
    converged = False
    iteration = 0
    for iteration in range(1, max_iter + 1):
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum = (t - 1) / t_next
        VW = W + momentum * (W - W_prev)
        Vb = b + momentum * (b - b_prev)
        f_v, gW, gb = cross_entropy_grad(Z, Y, VW, Vb)
        while True:  # backtracking: shrink the step until the quadratic model bounds the loss
            W_new = prox(VW - step * gW, step, lam, alpha, group)
            b_new = Vb - step * gb
            f_new, _, _ = cross_entropy_grad(Z, Y, W_new, b_new)
            dW, db = W_new - VW, b_new - Vb
            bound = (
                f_v
                + float((gW * dW).sum() + (gb * db).sum())
                + (float((dW * dW).sum() + (db * db).sum())) / (2 * step)
            )
            if f_new <= bound + 1e-12 or step < 1e-12:
                break
            step *= 0.5
        W_prev, b_prev, W, b, t = W, b, W_new, b_new, t_next
        objective = f_new + penalty(W, lam, alpha, group)
        if history and objective > history[-1]:
            t = 1.0  # adaptive restart: momentum overshot
        history.append(objective)
        if len(history) > 10 and history[-11] - objective <= tol * max(abs(objective), 1e-12):
            converged = True
            break
    return GLMFit(W, b, history[-1] if history else float("nan"), iteration, converged)


def lambda_max(Z: torch.Tensor, Y: torch.Tensor, alpha: float, group: bool) -> float:
    """The smallest λ at which W = 0 is optimal (the bias fitted to the class priors)."""
    priors = Y.mean(dim=0).clamp_min(1e-12)
    b = priors.log()
    _, gW, _ = cross_entropy_grad(Z, Y, torch.zeros(Y.shape[1], Z.shape[1], dtype=Z.dtype), b)
    size = gW.norm(dim=0).max() if group else gW.abs().max()
    return float(size) / max(alpha, 1e-3)


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), num_classes).to(dtype)
