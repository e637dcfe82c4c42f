"""Q-SENN's sparse regression: optimality of the elastic-net fits, the selection order, and the
quantisation on examples computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.qsenn import fit_elastic_net, lambda_max, quantise, select_features
from training.qsenn.glm import cross_entropy_grad, one_hot


def _data(seed=0, N=400, F=12, C=4, informative=4, shift=1.5):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (N,), generator=g)
    Z = torch.randn(N, F, generator=g, dtype=torch.float64)
    for c in range(informative):
        Z[y == c, c] += shift
    Z = (Z - Z.mean(0)) / Z.std(0)
    return Z, y, C


@pytest.mark.parametrize("group", [False, True])
def test_fit_satisfies_the_optimality_conditions(group):
    Z, y, C = _data()
    Y = one_hot(y, C, Z.dtype)
    alpha = 0.8
    lam = 0.2 * lambda_max(Z, Y, alpha, group)
    fit = fit_elastic_net(Z, Y, lam, alpha, group=group, max_iter=5000, tol=1e-10)
    _, gW, gb = cross_entropy_grad(Z, Y, fit.weight, fit.bias)
    smooth = gW + lam * (1 - alpha) * fit.weight  # gradient of everything but the α-term
    assert gb.abs().max() < 1e-5  # the bias is unpenalised
    if group:
        norms = fit.weight.norm(dim=0)
        active = norms > 1e-8
        # active columns: smooth + λα·w/‖w‖ = 0; inactive ones: ‖smooth‖ ≤ λα
        resid = smooth[:, active] + lam * alpha * fit.weight[:, active] / norms[active]
        assert resid.abs().max() < 1e-4
        assert (smooth[:, ~active].norm(dim=0) <= lam * alpha + 1e-6).all()
        assert 0 < int(active.sum()) < Z.shape[1]
    else:
        active = fit.weight.abs() > 1e-8
        resid = smooth[active] + lam * alpha * torch.sign(fit.weight[active])
        assert resid.abs().max() < 1e-4
        assert (smooth[~active].abs() <= lam * alpha + 1e-6).all()


def test_lambda_max_is_where_the_solution_becomes_zero():
    Z, y, C = _data(seed=1)
    Y = one_hot(y, C, Z.dtype)
    top = lambda_max(Z, Y, 0.9, group=True)
    above = fit_elastic_net(Z, Y, top * 1.01, 0.9, group=True, max_iter=3000, tol=1e-10)
    below = fit_elastic_net(Z, Y, top * 0.9, 0.9, group=True, max_iter=3000, tol=1e-10)
    assert above.weight.abs().max() < 1e-8
    assert below.weight.abs().max() > 1e-4


def test_selection_takes_the_informative_features_first():
    Z, y, C = _data(seed=2, F=20, C=5, informative=5, shift=2.0)
    order = select_features(Z, y, C, n=5)
    assert sorted(order) == [0, 1, 2, 3, 4]


def test_selection_bad_n():
    Z, y, C = _data()
    with pytest.raises(ValueError, match="n must be in 1..12"):
        select_features(Z, y, C, n=13)


def test_quantisation_by_hand():
    weight = np.array(
        [
            [0.9, -0.1, 0.0, 0.5],
            [-0.8, 0.2, 0.05, 0.0],
            [0.0, 0.0, 0.6, -0.3],
        ]
    )
    bias = np.array([0.4, -1.2, 0.3])
    q, b, m = quantise(weight, bias, per_class=2)
    # the 6 largest magnitudes: 0.9, 0.8, 0.6, 0.5, 0.3, 0.2 → m = 3.3 / 6 = 0.55
    assert m == pytest.approx(0.55)
    expected = 0.55 * np.array([[1, 0, 0, 1], [-1, 1, 0, 0], [0, 0, 1, -1]])
    np.testing.assert_allclose(q, expected, rtol=1e-6)
    # positive minus negative per class: 2, 0, 0 → excess 2, 0, 0; bias ramps from +1.2 to −1.2
    np.testing.assert_allclose(b, [-1.2, 1.2, 1.2], rtol=1e-6)


def test_quantisation_with_equal_counts_has_no_bias():
    q, b, _ = quantise(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([3.0, -1.0]), per_class=1)
    np.testing.assert_allclose(q, [[1.5, 0.0], [0.0, 1.5]])
    np.testing.assert_array_equal(b, [0.0, 0.0])


def test_quantised_model_is_exactly_explained():
    """A Q-SENN head built from a quantised layer: logit = Σ contributions + bias."""
    from qpm_zoo.backbone import Backbone
    from qpm_zoo.model import QPM
    from training.qsenn import quantised_layer

    Z, y, C = _data(seed=3, F=6, C=3, informative=3)

    layer = quantised_layer(Z, y, C, per_class=2, steps=10)
    backbone = Backbone.create("test_resnet")
    model = QPM.from_assignment(
        backbone,
        selected_features=[0, 5, 9, 20, 33, 40],
        weight=layer.weight,
        bias=layer.bias,
        mean=np.zeros(6),
        std=np.ones(6),
        label_names=["a", "b", "c"],
        k=2,
        model_type="qsenn",
    )
    assert model.config.model_type == "qsenn"
    preds = model.predict([np.random.default_rng(i).random((40, 40, 3)) for i in range(4)])
    for p in preds:
        e = p.explanation
        assert e.logit == pytest.approx(e.bias + sum(f.contribution for f in e.features), abs=1e-5)
        assert all(abs(f.weight) == pytest.approx(layer.magnitude, rel=1e-6) for f in e.features)
