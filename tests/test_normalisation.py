"""Q-SENN's μ, σ train in scale-free coordinates and come back as plain checkpoint parameters."""

from __future__ import annotations

import torch

from qpm_zoo.head import InterpretableHead
from training.nn.normalisation import trainable_normalisation


def _head(scale: float) -> InterpretableHead:
    return InterpretableHead(
        selection=[0, 1],
        weight=[[1.0, -1.0], [0.0, 1.0]],
        mean=torch.tensor([0.5, 0.2]) * scale,
        std=torch.tensor([0.1, 0.3]) * scale,
        bias=[0.0, 0.1],
    )


def test_values_are_unchanged_by_entering_and_leaving():
    head = _head(1.0)
    maps = torch.rand(3, 2, 2, 2)
    before = head(maps).logits
    with trainable_normalisation(head):
        assert torch.allclose(head(maps).logits, before, atol=1e-6)
    assert torch.allclose(head(maps).logits, before, atol=1e-6)
    assert set(dict(head.named_parameters())) == {"mean", "std"}
    assert not head.mean.requires_grad and not head.std.requires_grad


def test_gradient_steps_do_not_depend_on_the_features_scale():
    """The same SGD step moves the normalised features the same way at any feature scale, and σ
    stays positive even with a large learning rate (plain SGD on σ would cross zero)."""
    results = []
    for scale in (1.0, 1e-3):
        head = _head(scale)
        maps = torch.ones(4, 2, 2, 2) * scale * torch.tensor([0.7, 0.1]).view(1, 2, 1, 1)
        with trainable_normalisation(head):
            params = [p for p in head.parameters() if p.requires_grad]
            opt = torch.optim.SGD(params, lr=1.0)
            for _ in range(5):
                loss = torch.nn.functional.cross_entropy(
                    head(maps).logits, torch.tensor([1, 1, 1, 1])
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
        assert (head.std > 0).all()
        results.append(head(maps).features)
    assert torch.allclose(results[0], results[1], atol=1e-4)
