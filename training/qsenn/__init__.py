"""Q-SENN (AAAI 2024), the zoo's second model type: features chosen by a group-sparse elastic net,
a quantised sparse layer with signed weights and a bias, and rounds of fine-tuning."""

from .glm import fit_elastic_net, lambda_max
from .layer import QuantisedLayer, fit_sparse_layer, quantise, quantised_layer
from .selection import select_features

__all__ = [
    "QuantisedLayer",
    "fit_elastic_net",
    "fit_sparse_layer",
    "lambda_max",
    "quantise",
    "quantised_layer",
    "select_features",
]
