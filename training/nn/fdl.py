"""The Feature Diversity Loss (docs/method.md §1): features the predicted class relies on should peak
at different places.

L_div = -β · (1/B) Σ_b Σ_positions max_f ( Ŵ[b, f] · s_f[b, position] ), where Ŵ[b] is the
predicted class's |weight| row scaled to unit L2 norm (+1e-5), and s_f is the softmax of map f
over positions, scaled by mean(M_f) / max_g mean(M_g) (the max clamped at ≥ 1e-6).
"""

from __future__ import annotations

import torch


def feature_diversity_loss(
    feature_maps: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor, beta: float
) -> torch.Tensor:
    """FDL for maps [B, F, h, w] of the features `weight` [C, F] acts on, and the batch's logits."""
    if beta == 0:
        return feature_maps.new_zeros(())
    B, _F = feature_maps.shape[:2]
    rows = weight.abs()[logits.argmax(dim=1)]  # [B, F]
    rows = rows / (rows.norm(dim=1, keepdim=True) + 1e-5)
    means = feature_maps.mean(dim=(2, 3))  # [B, F]
    scale = means / means.amax(dim=1, keepdim=True).clamp_min(1e-6)
    soft = torch.softmax(feature_maps.flatten(2), dim=2) * scale.unsqueeze(2)  # [B, F, hw]
    peak = (soft * rows.unsqueeze(2)).amax(dim=1)  # [B, hw]
    return -beta * peak.sum() / B
