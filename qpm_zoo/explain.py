"""Predictions with their exact explanations, and global class explanations and comparisons.

Torch-free: `InterpretableModel` builds everything from the checkpoint's config and two arrays a
backend computes (logits and normalised selected features), so the PyTorch model and the ONNX
runtime give the same result objects. The explanation is exact: a class's logit is the sum of
its features' contributions (weight × normalised activation) plus its bias (zero for QPM).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from .config import CONFIG_NAME, QPMConfig
from .errors import InputError
from .preprocess import ImagePreprocessor, is_batch, load_image


@dataclass(frozen=True)
class FeatureContribution:
    """One feature's part in one prediction."""

    index: int  #: position in the interpretable layer (0..n-1)
    channel: int  #: the backbone channel it comes from
    name: str
    activation: float  #: normalised activation (x - mean) / std
    weight: float  #: the class's weight on it (1 for QPM)
    contribution: float  #: weight × activation: its exact share of the logit
    shared_with: tuple[str, ...]  #: the other classes that use this feature


@dataclass(frozen=True)
class Explanation:
    """Why a class got its logit: logit = sum of contributions + bias, exactly."""

    class_index: int
    label: str
    logit: float
    bias: float
    features: tuple[FeatureContribution, ...]

    @property
    def total(self) -> float:
        return self.bias + float(sum(f.contribution for f in self.features))


@dataclass(frozen=True)
class ClassScore:
    index: int
    label: str
    probability: float
    logit: float


@dataclass(frozen=True)
class Prediction:
    """The predicted class of one image, the runner-ups and the exact explanation."""

    input: str
    class_index: int
    label: str
    probability: float
    logit: float
    top_k: tuple[ClassScore, ...]
    explanation: Explanation

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class ClassFeature:
    """One feature of a class in the global explanation."""

    index: int
    channel: int
    name: str
    description: str | None
    weight: float
    shared_with: tuple[str, ...]


@dataclass(frozen=True)
class ClassExplanation:
    """A class's features (its whole decision rule) and the classes each one is shared with."""

    class_index: int
    label: str
    bias: float
    features: tuple[ClassFeature, ...]

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class ClassRef:
    index: int
    label: str


@dataclass(frozen=True)
class ComparedFeature:
    index: int
    channel: int
    name: str
    weight_a: float
    weight_b: float


@dataclass(frozen=True)
class ClassComparison:
    """Two classes feature by feature: shared ones (equal weights cancel in the logit difference)
    and the ones only one class uses, which decide between them."""

    class_a: ClassRef
    class_b: ClassRef
    shared: tuple[ComparedFeature, ...]
    only_a: tuple[ComparedFeature, ...]
    only_b: tuple[ComparedFeature, ...]

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class ForwardArrays(NamedTuple):
    """What a backend computes for a preprocessed batch, as numpy arrays."""

    logits: np.ndarray  #: [B, C]
    features: np.ndarray  #: [B, n] normalised selected features
    feature_maps: np.ndarray | None = None  #: [B, n, h, w] selected maps, when asked for


class InterpretableModel:
    """predict / explain_class / compare on top of a backend's logits and features.

    Subclasses set `self.config` (a QPMConfig) and implement `_forward_arrays(batch, with_maps)`,
    which maps a preprocessed float32 batch [B, 3, H, W] to ForwardArrays (the selected feature
    maps only when `with_maps` is true, as they are large).
    """

    config: QPMConfig

    def _forward_arrays(self, batch: np.ndarray, with_maps: bool = False) -> ForwardArrays:
        raise NotImplementedError

    # -- static facts of the checkpoint --------------------------------------------------------
    @property
    def label_names(self) -> tuple[str, ...]:
        return self.config.label_names

    @cached_property
    def preprocessor(self) -> ImagePreprocessor:
        return ImagePreprocessor(self.config.preprocessing)

    @cached_property
    def class_weights(self) -> np.ndarray:
        """The interpretable layer's [C, n] weights (binary for QPM)."""
        return self.config.weight_matrix()

    @cached_property
    def class_bias(self) -> np.ndarray:
        bias = self.config.bias_vector()
        return np.zeros(self.config.num_classes, np.float32) if bias is None else bias

    @cached_property
    def _feature_users(self) -> list[list[int]]:
        users: list[list[int]] = [[] for _ in range(self.config.n_features)]
        for c, row in enumerate(self.config.assignment.class_features):
            for j in row:
                users[j].append(c)
        return users

    def class_index(self, c: int | str) -> int:
        """Resolve a class given by index or by (exact) name; an unknown one is an InputError."""
        names = self.label_names
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= c < len(names):
                raise InputError(
                    f"class index {c} is out of range: the model has {len(names)} classes"
                )
            return int(c)
        if isinstance(c, str):
            try:
                return names.index(c)
            except ValueError:
                pass
            if c.strip().lstrip("-").isdigit():
                return self.class_index(int(c.strip()))
            lowered = [n.lower() for n in names]
            if c.lower() in lowered:
                return lowered.index(c.lower())
            close = difflib.get_close_matches(c, names, n=3)
            hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
            raise InputError(f"unknown class {c!r}{hint}")
        raise InputError(f"a class is given by name or index, got {type(c).__name__}")

    def _shared_with(self, feature: int, owner: int) -> tuple[str, ...]:
        return tuple(self.label_names[d] for d in self._feature_users[feature] if d != owner)

    # -- local explanations --------------------------------------------------------------------
    def predict(
        self, inputs: Any, top_k: int = 5, batch_size: int = 16
    ) -> Prediction | list[Prediction]:
        """Classify images and explain each prediction exactly.

        `inputs` is a path, PIL image, HWC array or CHW tensor, or a list of those; a list gives
        a list of Predictions.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise InputError(f"top_k must be a positive integer, got {top_k!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        items: Sequence[Any] = inputs if is_batch(inputs) else [inputs]
        if len(items) == 0:
            raise InputError("no images given (an empty list)")
        results: list[Prediction] = []
        for start in range(0, len(items), batch_size):
            chunk = list(items[start : start + batch_size])
            loaded = [
                load_image(x, start + i if is_batch(inputs) else None) for i, x in enumerate(chunk)
            ]
            batch = np.stack([self.preprocessor.to_model_input(item) for item in loaded])
            logits, features, _ = self._forward_arrays(batch)
            results.extend(
                self._prediction(item.name, logits[i], features[i], top_k)
                for i, item in enumerate(loaded)
            )
        return results if is_batch(inputs) else results[0]

    def explain_logits(self, class_index: int, logit: float, features: np.ndarray) -> Explanation:
        """The exact explanation of one class's logit given the normalised features [n]."""
        c = int(class_index)
        row = self.config.assignment.class_features[c]
        weights = self.class_weights[c]
        items = []
        for j in row:
            activation = float(features[j])
            weight = float(weights[j])
            items.append(
                FeatureContribution(
                    index=int(j),
                    channel=int(self.config.selected_features[j]),
                    name=self.config.feature_name(j),
                    activation=activation,
                    weight=weight,
                    contribution=weight * activation,
                    shared_with=self._shared_with(j, c),
                )
            )
        items.sort(key=lambda f: f.contribution, reverse=True)
        return Explanation(
            class_index=c,
            label=self.label_names[c],
            logit=float(logit),
            bias=float(self.class_bias[c]),
            features=tuple(items),
        )

    def _prediction(
        self, name: str, logits: np.ndarray, features: np.ndarray, top_k: int
    ) -> Prediction:
        z = logits.astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        order = np.argsort(-z, kind="stable")[: min(top_k, len(z))]
        best = int(order[0])
        return Prediction(
            input=name,
            class_index=best,
            label=self.label_names[best],
            probability=float(p[best]),
            logit=float(z[best]),
            top_k=tuple(
                ClassScore(int(i), self.label_names[i], float(p[i]), float(z[i])) for i in order
            ),
            explanation=self.explain_logits(best, float(logits[best]), features),
        )

    # -- global explanations -------------------------------------------------------------------
    def explain_class(self, c: int | str) -> ClassExplanation:
        """A class's features and which other classes share each one."""
        ci = self.class_index(c)
        descriptions = self.config.feature_descriptions
        features = tuple(
            ClassFeature(
                index=int(j),
                channel=int(self.config.selected_features[j]),
                name=self.config.feature_name(j),
                description=None if descriptions is None else descriptions[j],
                weight=float(self.class_weights[ci, j]),
                shared_with=self._shared_with(j, ci),
            )
            for j in self.config.assignment.class_features[ci]
        )
        return ClassExplanation(ci, self.label_names[ci], float(self.class_bias[ci]), features)

    def compare(self, a: int | str, b: int | str) -> ClassComparison:
        """Shared features and the ones only `a` or only `b` uses."""
        ia, ib = self.class_index(a), self.class_index(b)
        fa = set(self.config.assignment.class_features[ia])
        fb = set(self.config.assignment.class_features[ib])

        def entry(j: int) -> ComparedFeature:
            return ComparedFeature(
                index=int(j),
                channel=int(self.config.selected_features[j]),
                name=self.config.feature_name(j),
                weight_a=float(self.class_weights[ia, j]),
                weight_b=float(self.class_weights[ib, j]),
            )

        return ClassComparison(
            class_a=ClassRef(ia, self.label_names[ia]),
            class_b=ClassRef(ib, self.label_names[ib]),
            shared=tuple(entry(j) for j in sorted(fa & fb)),
            only_a=tuple(entry(j) for j in sorted(fa - fb)),
            only_b=tuple(entry(j) for j in sorted(fb - fa)),
        )


class GlobalExplainer(InterpretableModel):
    """explain_class and compare from config.json alone: no weights, no torch, one small download."""

    def __init__(self, config: QPMConfig):
        self.config = config

    @classmethod
    def from_pretrained(cls, model_id: str, **where: Any) -> GlobalExplainer:
        from .hub import resolve_file

        return cls(QPMConfig.load(resolve_file(model_id, CONFIG_NAME, **where)))

    def _forward_arrays(self, batch: np.ndarray, with_maps: bool = False) -> ForwardArrays:
        raise InputError("GlobalExplainer has no weights; load QPM or QPMOnnx to predict images")
