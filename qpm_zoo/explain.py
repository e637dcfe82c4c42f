"""Predictions with their exact explanations, and global class explanations and comparisons.

Torch-free: `InterpretableModel` builds everything from the checkpoint's config and two arrays a
backend computes (logits and normalised selected features), so the PyTorch model and the ONNX
runtime give the same result objects. The explanation is exact: a class's logit is the sum of
its features' contributions (weight × normalised activation) plus its bias (zero for QPM).
Images are loaded, preprocessed and batched in one loop (`InterpretableModel._batches`) that
serves `predict` and `predict_with_maps`, which also keeps what figures draw.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .config import CoverageTarget, QPMConfig
from .conformal import prediction_sets, softmax
from .errors import InputError, NonFiniteOutputError, UsageError
from .hub import CheckpointHubMixin
from .preprocess import ImagePreprocessor, LoadedImage, is_batch


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
class SetFeature:
    """A feature in the explanation of a set of classes: each member's weight on it (0 where a
    member does not use it) and, for an image's set, its normalised activation there."""

    index: int
    channel: int
    name: str
    weights: tuple[float, ...]  #: one per member, in the set's order
    activation: float | None = None  #: in the image (None for a set given without one)


@dataclass(frozen=True)
class SetMember:
    """One class of a set and the features that set it apart from the other members."""

    index: int
    label: str
    distinguishing: tuple[SetFeature, ...]  #: its features not shared by every member
    probability: float | None = None  #: for an image's set
    logit: float | None = None


@dataclass(frozen=True)
class SetComparison:
    """Classes compared feature by feature (`compare` generalised from two classes to a set):
    the features every member uses with the same sign (docs/method.md §9) and, per member, the
    features it uses that are not shared that way."""

    members: tuple[SetMember, ...]
    shared: tuple[SetFeature, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(m.label for m in self.members)

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class PredictionSet:
    """A conformal prediction set (docs/method.md §9): the classes that together hold the true
    one with probability at least `coverage`, most probable first, explained together.

    It can be empty (LAC, when no class's score is within q̂): at this coverage no class needs
    to be listed, the image is among those the target lets go; the top-1 prediction is in the
    Prediction as always. With `never_empty=True` such a set is the top class instead, and
    `filled` says so (that only raises coverage, up to the model's accuracy)."""

    coverage: float
    score: str  #: the nonconformity score it was calibrated with (lac, aps, raps)
    threshold: float  #: q̂: a class is in the set when its score is <= q̂
    explanation: SetComparison
    filled: bool = False  #: the set was empty and never_empty put the top class in it

    @property
    def labels(self) -> tuple[str, ...]:
        return self.explanation.labels

    @property
    def empty(self) -> bool:
        return not self.explanation.members

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(m.index for m in self.explanation.members)

    def to_dict(self) -> dict:
        return {**_jsonable(asdict(self)), "labels": list(self.labels), "empty": self.empty}


@dataclass(frozen=True)
class Prediction:
    """The predicted class of one image, the runner-ups and the exact explanation; with a
    coverage, also the image's conformal prediction set."""

    input: str
    class_index: int
    label: str
    probability: float
    logit: float
    top_k: tuple[ClassScore, ...]
    explanation: Explanation
    prediction_set: PredictionSet | None = None

    def to_dict(self) -> dict:
        out = _jsonable(asdict(self))
        if self.prediction_set is None:
            del out["prediction_set"]  # the JSON of a plain prediction stays as it was
        else:
            out["prediction_set"] = self.prediction_set.to_dict()
        return out


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


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class ModelOutput(NamedTuple):
    """What a backend computes for a preprocessed batch: torch tensors from `QPM.forward_all`,
    numpy arrays from `forward_arrays` (QPM and QPMOnnx alike)."""

    logits: Any  #: [B, C]
    features: Any  #: [B, n] normalised selected features (the explanation's activations)
    feature_maps: Any = None  #: [B, n, h, w] selected maps; from forward_arrays only when asked


@dataclass(frozen=True)
class ExplainedImage:
    """One image as the model saw it, its prediction, and every selected feature's map: what a
    figure of the prediction needs, all from the same forward pass."""

    prediction: Prediction
    view: np.ndarray  #: [H, W, 3] uint8: the resized, centre-cropped model input
    logits: np.ndarray  #: [C] all classes' logits
    features: np.ndarray  #: [n] normalised activations of the selected features
    maps: np.ndarray  #: [n, h, w] the selected features' maps over `view`

    @property
    def name(self) -> str:
        return self.prediction.input


class InterpretableModel:
    """predict / explain_class / compare on top of a backend's logits and features.

    Subclasses set `self.config` (a QPMConfig) and implement `forward_arrays(pixel_values,
    with_maps)`, which maps a preprocessed float32 batch [B, 3, H, W] to a ModelOutput of numpy
    arrays (the selected feature maps only when `with_maps` is true, as they are large).
    """

    config: QPMConfig

    def forward_arrays(self, pixel_values: np.ndarray, with_maps: bool = False) -> ModelOutput:
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
        self,
        inputs: Any,
        top_k: int = 5,
        batch_size: int = 16,
        coverage: float | None = None,
        never_empty: bool = False,
    ) -> Prediction | list[Prediction]:
        """Classify images and explain each prediction exactly.

        `inputs` is a path, PIL image, HWC array or CHW tensor, or a list of those; a list gives
        a list of Predictions. With `coverage` (e.g. 0.9) each prediction also holds its
        conformal prediction set, explained (needs a checkpoint calibrated for that coverage:
        `python -m training calibrate`; UncalibratedCoverageError otherwise). The set is the
        conformal set, possibly empty; `never_empty=True` puts the top class into empty sets,
        which only raises coverage above the target (docs/method.md §9).
        """
        _check_positive("top_k", top_k)
        target = self._coverage_target(coverage, never_empty)
        results = [
            self._prediction(item.name, out.logits[i], out.features[i], top_k, target, never_empty)
            for loaded, _, out in self._batches(inputs, batch_size, with_maps=False)
            for i, item in enumerate(loaded)
        ]
        return results if is_batch(inputs) else results[0]

    def predict_logits(self, inputs: Any, batch_size: int = 16) -> np.ndarray:
        """All classes' logits [N, C] (float32) for a list of images, without explanations:
        what calibrating and evaluating prediction sets need from many images."""
        if not is_batch(inputs):
            inputs = [inputs]
        return np.concatenate(
            [
                np.asarray(out.logits, dtype=np.float32)
                for _, _, out in self._batches(inputs, batch_size, with_maps=False)
            ]
        )

    def predict_with_maps(
        self,
        inputs: Any,
        top_k: int = 5,
        batch_size: int = 8,
        coverage: float | None = None,
        never_empty: bool = False,
    ) -> list[ExplainedImage]:
        """`predict`, keeping what figures draw: the model input as pixels and the selected
        features' maps (from the same forward pass as the prediction). Always a list."""
        _check_positive("top_k", top_k)
        target = self._coverage_target(coverage, never_empty)
        out: list[ExplainedImage] = []
        for loaded, batch, result in self._batches(inputs, batch_size, with_maps=True):
            views = self.preprocessor.to_view(batch)
            out.extend(
                ExplainedImage(
                    prediction=self._prediction(
                        item.name,
                        result.logits[i],
                        result.features[i],
                        top_k,
                        target,
                        never_empty,
                    ),
                    view=views[i],
                    logits=np.asarray(result.logits[i], dtype=np.float32),
                    features=np.asarray(result.features[i], dtype=np.float32),
                    maps=np.asarray(result.feature_maps[i], dtype=np.float32),
                )
                for i, item in enumerate(loaded)
            )
        return out

    def _batches(
        self, inputs: Any, batch_size: int, with_maps: bool
    ) -> Iterator[tuple[list[LoadedImage], np.ndarray, ModelOutput]]:
        """The one inference loop: load, preprocess and run `inputs` `batch_size` at a time, the
        next batch prepared while the current one runs."""
        _check_positive("batch_size", batch_size)
        if not is_batch(inputs):  # one image: not numbered in names
            batch, loaded = self.preprocessor(inputs)
            yield loaded, batch, _finite(self.forward_arrays(batch, with_maps=with_maps), loaded)
            return
        if len(inputs) == 0:
            raise InputError("no images given (an empty list)")
        starts = range(0, len(inputs), batch_size)

        def prepare(start: int) -> tuple[np.ndarray, list[LoadedImage]]:
            return self.preprocessor(list(inputs[start : start + batch_size]), start)

        # Decode and preprocess the next batch in a thread while the backend runs this one:
        # Pillow and the backends release the GIL, so the model is rarely kept waiting.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qpm-preprocess") as pool:
            upcoming = pool.submit(prepare, starts[0])
            for i in range(len(starts)):
                batch, loaded = upcoming.result()
                if i + 1 < len(starts):
                    upcoming = pool.submit(prepare, starts[i + 1])
                yield (
                    loaded,
                    batch,
                    _finite(self.forward_arrays(batch, with_maps=with_maps), loaded),
                )

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

    def _coverage_target(
        self, coverage: float | None, never_empty: bool = False
    ) -> CoverageTarget | None:
        """The calibrated threshold for `coverage` (None: no sets asked for), checked before any
        image is read."""
        if coverage is None:
            if never_empty:
                raise UsageError("never_empty applies to prediction sets: give a coverage too")
            return None
        return self.config.coverage_target(coverage)

    def _prediction_set(
        self,
        target: CoverageTarget,
        p: np.ndarray,
        z: np.ndarray,
        features: np.ndarray,
        never_empty: bool = False,
    ) -> PredictionSet:
        calibration = self.config.calibration
        scores = calibration.score_function().class_scores(p[None])
        (members,), filled = prediction_sets(scores, p[None], target.threshold, never_empty)
        return PredictionSet(
            coverage=target.coverage,
            score=calibration.score,
            threshold=target.threshold,
            explanation=self._set_comparison(members, features, p, z),
            filled=bool(filled[0]),
        )

    def _prediction(
        self,
        name: str,
        logits: np.ndarray,
        features: np.ndarray,
        top_k: int,
        target: CoverageTarget | None = None,
        never_empty: bool = False,
    ) -> Prediction:
        z = logits.astype(np.float64)
        p = softmax(z)
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
            prediction_set=None
            if target is None
            else self._prediction_set(target, p, z, features, never_empty),
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

    def compare_set(self, classes: Any) -> SetComparison:
        """`compare` for any number of classes: the features all of them share and, per class,
        the features that set it apart from the others (docs/method.md §9)."""
        if isinstance(classes, (str, int, np.integer)):
            classes = [classes]
        indices = [self.class_index(c) for c in classes]
        if not indices:
            raise InputError("compare_set needs at least one class")
        if len(set(indices)) != len(indices):
            raise InputError(f"compare_set got a class twice: {list(classes)}")
        return self._set_comparison(indices)

    def _set_comparison(
        self,
        members: Sequence[int],
        features: np.ndarray | None = None,
        p: np.ndarray | None = None,
        z: np.ndarray | None = None,
    ) -> SetComparison:
        """Shared: the features every member uses with one sign (for QPM, every weight is 1, so:
        used by all). A member's distinguishing features: those it uses that are not shared,
        most contributing first when the image's `features` are given (else by index)."""
        members = [int(c) for c in members]
        weights = self.class_weights[members]  # [m, n]
        used = weights != 0
        signs = np.sign(weights)
        # an empty set (a conformal set can be one) shares nothing: no member uses a feature
        shared_mask = (
            used.all(axis=0) & (np.abs(signs.sum(axis=0)) == len(members))
            if members
            else np.zeros(weights.shape[1], dtype=bool)
        )

        def entry(j: int) -> SetFeature:
            return SetFeature(
                index=int(j),
                channel=int(self.config.selected_features[j]),
                name=self.config.feature_name(j),
                weights=tuple(float(w) for w in weights[:, j]),
                activation=None if features is None else float(features[j]),
            )

        def ordered(js: Iterable[int], row: int) -> list[int]:
            js = sorted(int(j) for j in js)
            if features is None:
                return js
            return sorted(js, key=lambda j: -float(weights[row, j] * features[j]))

        shared = tuple(entry(j) for j in np.flatnonzero(shared_mask))
        out = []
        for row, c in enumerate(members):
            own = np.flatnonzero(used[row] & ~shared_mask)
            out.append(
                SetMember(
                    index=c,
                    label=self.label_names[c],
                    distinguishing=tuple(entry(j) for j in ordered(own, row)),
                    probability=None if p is None else float(p[c]),
                    logit=None if z is None else float(z[c]),
                )
            )
        return SetComparison(members=tuple(out), shared=shared)


def _finite(out: ModelOutput, loaded: list[LoadedImage]) -> ModelOutput:
    """`out` if its logits and features are finite: a NaN would make a probability, a JSON
    document and an explanation that are all wrong, so it stops here, naming the image."""
    for name in ("logits", "features"):
        values = np.asarray(getattr(out, name))
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise NonFiniteOutputError(
                f"{loaded[first].name}: the model computed non-finite {name} (NaN or infinity); "
                "its weights overflow on this input, so no prediction is given"
            )
    return out


class GlobalExplainer(InterpretableModel, CheckpointHubMixin, library_name="qpm-zoo"):
    """explain_class and compare from config.json alone: no weights, no torch, one small download.

    >>> explainer = GlobalExplainer.from_pretrained("runs/demo/model")   # folder or Hub id
    """

    def __init__(self, config: QPMConfig):
        self.config = config

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        config: QPMConfig,
        config_path: Path,
        revision: str | None,
        cache_dir: str | os.PathLike | None,
        local_files_only: bool,
        token: str | bool | None,
        force_download: bool,
    ) -> GlobalExplainer:
        return cls(config)  # config.json is all it needs

    def forward_arrays(self, pixel_values: np.ndarray, with_maps: bool = False) -> ModelOutput:
        raise InputError("GlobalExplainer has no weights; load QPM or QPMOnnx to predict images")
