"""`QPMOnnx`: a checkpoint's ONNX export run with onnxruntime, without PyTorch.

A GPU server needs only numpy, Pillow, huggingface_hub, pydantic and onnxruntime-gpu: this module imports
nothing else (preprocessing and explanations come from qpm_zoo's torch-free modules), so
`predict`, `explain_class` and `compare` return the same objects as the PyTorch `QPM`.

Loading is strict, like QPM's: config.json must describe the export (its `onnx` entry, written
by `python -m export onnx`), the file's SHA-256 must match that entry, and the graph's inputs
and outputs must agree with config.json (input size, class count, feature count). Each failure
is a CheckpointError naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import CONFIG_NAME, OnnxRecord, QPMConfig
from .errors import CheckpointError, InputError, MissingDependencyError
from .explain import InterpretableModel, ModelOutput
from .hub import CheckpointHubMixin, resolve_file

logger = logging.getLogger(__name__)

INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("logits", "features", "feature_maps")

#: Tried in this order when the caller gives no providers; those this onnxruntime build lacks
#: are skipped, and onnxruntime falls back to the CPU when CUDA cannot start.
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")

#: onnxruntime's log severities: 2 = warnings (its default), 4 = fatal only.
_ORT_DEFAULT_SEVERITY = 2
_ORT_QUIET_SEVERITY = 4


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (exports reach hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "qpm_zoo.QPMOnnx") from None
    return onnxruntime


def _provider_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], dict)
    ):
        return spec[0]
    raise InputError(
        f"a provider is a name or a (name, options dict) pair, got {spec!r}; "
        "e.g. providers=['CUDAExecutionProvider', 'CPUExecutionProvider']"
    )


def choose_providers(ort: Any, providers: Sequence[Any] | None) -> list[Any]:
    """The provider list to request: the caller's (checked), else CUDA then CPU.

    Names onnxruntime does not know are an InputError (a typo should not silently run on the
    CPU); known providers this build lacks are skipped, as long as one is left.
    """
    if isinstance(providers, (str, bytes)):
        raise InputError(f"providers must be a list, e.g. [{providers!r}], not a string")
    requested = list(DEFAULT_PROVIDERS if providers is None else providers)
    if not requested:
        raise InputError("providers must not be empty (e.g. ['CPUExecutionProvider'])")
    known, available = set(ort.get_all_providers()), set(ort.get_available_providers())
    for spec in requested:
        name = _provider_name(spec)
        if name not in known:
            raise InputError(
                f"unknown onnxruntime provider {name!r}; this build has {sorted(available)}"
            )
    usable = [spec for spec in requested if _provider_name(spec) in available]
    skipped = [_provider_name(s) for s in requested if _provider_name(s) not in available]
    if skipped:
        logger.info("onnxruntime build lacks %s; skipping", skipped)
    if not usable:
        raise InputError(
            f"none of the requested providers {[_provider_name(s) for s in requested]} is in this "
            f"onnxruntime build (it has {sorted(available)}); for CUDA install onnxruntime-gpu"
        )
    return usable


def create_session(
    model: str | os.PathLike | bytes,
    providers: Sequence[Any] | None = None,
    session_options: Any = None,
    verbose: bool = False,
) -> Any:
    """An onnxruntime InferenceSession that stays quiet unless `verbose`.

    Without a GPU, asking for CUDA makes onnxruntime print errors before it falls back to the
    CPU. Unless `verbose`, its default logger is set to fatal-only (a process-wide setting),
    the session logs at the same level, and the fallback notices its Python wrapper prints are
    kept out of stdout (which may be carrying JSON); they are logged at INFO on this module's
    logger. Read `session.get_providers()` to know what runs.
    """
    ort = import_onnxruntime()
    requested = choose_providers(ort, providers)
    severity = _ORT_DEFAULT_SEVERITY if verbose else _ORT_QUIET_SEVERITY
    ort.set_default_logger_severity(severity)
    if session_options is None:
        session_options = ort.SessionOptions()
        session_options.log_severity_level = severity
    notices = io.StringIO()
    with contextlib.redirect_stdout(sys.stderr if verbose else notices):
        if any(_provider_name(p) == "CUDAExecutionProvider" for p in requested):
            # Lets onnxruntime find the CUDA/cuDNN libraries shipped as pip packages.
            preload = getattr(ort, "preload_dlls", None)
            if preload is not None:
                try:
                    preload()
                except Exception as e:  # noqa: BLE001 - best effort: the session falls back to the CPU
                    logger.info("onnxruntime.preload_dlls() failed: %s", e)
        session = ort.InferenceSession(
            model if isinstance(model, bytes) else os.fspath(model),
            sess_options=session_options,
            providers=requested,
        )
    if notices.getvalue().strip():
        logger.info("onnxruntime: %s", notices.getvalue().strip())
    return session


class QPMOnnx(InterpretableModel, CheckpointHubMixin, library_name="qpm-zoo"):
    """A qpm-zoo checkpoint's ONNX export on onnxruntime: QPM's predict/explain/compare, no torch.

    >>> model = QPMOnnx.from_pretrained("runs/demo/model")     # a folder or a Hub repo id
    >>> model.providers                                       # what actually runs
    ['CPUExecutionProvider']
    >>> pred = model.predict("bird.jpg")
    """

    def __init__(
        self,
        config: QPMConfig,
        model_file: str | os.PathLike | bytes,
        *,
        providers: Sequence[Any] | None = None,
        session_options: Any = None,
        verbose: bool = False,
        source: str = CONFIG_NAME,
    ):
        """Check `model_file` (a path, or the export's bytes) against `config` and open a session.

        `source` names config.json in error messages.
        """
        self.config = config
        self.record = OnnxRecord.from_config(config, source)
        self.model_file = model_file if isinstance(model_file, bytes) else Path(model_file)
        name = "the exported graph" if isinstance(model_file, bytes) else str(model_file)
        self._name = name
        self._check_record_against_config(source)
        self._check_checksum(source)
        try:
            self.session = create_session(model_file, providers, session_options, verbose)
        except (InputError, MissingDependencyError):
            raise
        except Exception as e:  # noqa: BLE001 - onnxruntime's exception types vary by version
            raise CheckpointError(
                f"{name}: onnxruntime cannot load it ({type(e).__name__}: {e})"
            ) from None
        self._input_type, self._fixed_batch = self._check_graph()

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
        providers: Sequence[Any] | None = None,
        session_options: Any = None,
        verbose: bool = False,
    ) -> QPMOnnx:
        """The ONNX export config.json records, checked against it.

        `providers` defaults to CUDA then CPU; `model.providers` says what runs. `verbose=True`
        lets onnxruntime print its warnings (e.g. why CUDA could not start).
        """
        import_onnxruntime()  # fail before downloading anything large
        record = OnnxRecord.from_config(config, str(config_path))
        onnx_path = resolve_file(
            model_id,
            record.file,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            force_download=force_download,
            required=False,
        )
        if onnx_path is None:
            raise CheckpointError(
                f"{model_id}: config.json describes an ONNX export '{record.file}', but the "
                "checkpoint has no such file; create it with: python -m export onnx MODEL_DIR"
            )
        return cls(
            config,
            onnx_path,
            providers=providers,
            session_options=session_options,
            verbose=verbose,
            source=str(config_path),
        )

    # -- load-time checks ----------------------------------------------------------------------
    def _check_record_against_config(self, source: str) -> None:
        expected = tuple(self.config.preprocessing.input_size)
        if self.record.input_size != expected:
            raise CheckpointError(
                f"{source}: 'onnx.input_size' is {list(self.record.input_size)} but "
                f"'preprocessing.input_size' is {list(expected)}; re-export the model"
            )

    def _check_checksum(self, source: str) -> None:
        if isinstance(self.model_file, bytes):
            actual = hashlib.sha256(self.model_file).hexdigest()
        else:
            actual = file_sha256(self.model_file)
        if actual != self.record.sha256:
            raise CheckpointError(
                f"{self._name}: SHA-256 {actual[:12]}… does not match 'onnx.sha256' "
                f"{self.record.sha256[:12]}… in {source}: the file is damaged or from another "
                "export; re-export with: python -m export onnx MODEL_DIR"
            )

    def _check_graph(self) -> tuple[Any, int | None]:
        """Compare the graph's inputs and outputs with config.json; return the input's element
        type and the fixed batch size (None when the batch is dynamic)."""
        c = self.config
        _, height, width = c.preprocessing.input_size
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
            raise CheckpointError(
                f"{self._name}: the graph must take one input '{INPUT_NAME}', "
                f"it takes {[i.name for i in inputs]}"
            )
        outputs = {o.name: o for o in self.session.get_outputs()}
        missing = [name for name in OUTPUT_NAMES if name not in outputs]
        if missing:
            raise CheckpointError(
                f"{self._name}: the graph lacks output(s) {missing}; it has {sorted(outputs)}"
            )
        n, classes = c.n_features, c.num_classes
        # (what, its shape, the shape config.json implies, the config field it comes from)
        expected = [
            (
                f"input '{INPUT_NAME}'",
                inputs[0].shape,
                ["batch", 3, height, width],
                "preprocessing.input_size",
            ),
            ("output 'logits'", outputs["logits"].shape, ["batch", classes], "num_classes"),
            ("output 'features'", outputs["features"].shape, ["batch", n], "selected_features"),
            (
                "output 'feature_maps'",
                outputs["feature_maps"].shape,
                ["batch", n, "h", "w"],
                "selected_features",
            ),
        ]
        for what, shape, needed, fieldname in expected:
            fixed_dims = [(i, d) for i, d in enumerate(needed) if isinstance(d, int)]
            if len(shape) != len(needed) or any(shape[i] != d for i, d in fixed_dims):
                raise CheckpointError(
                    f"{self._name}: {what} has shape {_shape_text(shape)}, but config.json "
                    f"('{fieldname}') needs {_shape_text(needed)}; re-export the model"
                )
        maps_shape = outputs["feature_maps"].shape
        if self.record.feature_map_size is not None and list(maps_shape[2:]) != list(
            self.record.feature_map_size
        ):
            raise CheckpointError(
                f"{self._name}: feature maps are {_shape_text(maps_shape[2:])}, but config.json "
                f"'onnx.feature_map_size' says {list(self.record.feature_map_size)}"
            )
        batch = inputs[0].shape[0]
        fixed = batch if isinstance(batch, int) else None
        if fixed is not None and fixed != 1:
            raise CheckpointError(
                f"{self._name}: exported for a fixed batch of {fixed}; re-export with a dynamic "
                "batch (python -m export onnx does)"
            )
        if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
            raise CheckpointError(
                f"{self._name}: '{INPUT_NAME}' must be float or float16, got {inputs[0].type}"
            )
        return (np.float16 if inputs[0].type == "tensor(float16)" else np.float32), fixed

    # -- running -------------------------------------------------------------------------------
    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses (after any fallback), best first."""
        return list(self.session.get_providers())

    def forward_arrays(self, pixel_values: np.ndarray, with_maps: bool = False) -> ModelOutput:
        """Run preprocessed pixel values [B, 3, H, W] (float32, normalised) through the export."""
        batch = np.asarray(pixel_values)
        _, height, width = self.record.input_size
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, height, width):
            raise InputError(
                f"pixel_values has shape {tuple(batch.shape)}, but {self._name} was exported for "
                f"[batch, 3, {height}, {width}] (fixed size); pass images to predict(), which "
                "resizes them with the checkpoint's preprocessing"
            )
        if batch.shape[0] == 0:
            raise InputError("pixel_values holds no images (batch size 0)")
        if batch.dtype.kind != "f":
            raise InputError(f"pixel_values must be floating point, got {batch.dtype}")
        batch = np.ascontiguousarray(batch, dtype=self._input_type)
        names = list(OUTPUT_NAMES if with_maps else OUTPUT_NAMES[:2])
        if self._fixed_batch is None:
            results = self.session.run(names, {INPUT_NAME: batch})
        else:
            runs = [
                self.session.run(names, {INPUT_NAME: batch[i : i + 1]}) for i in range(len(batch))
            ]
            results = [np.concatenate(parts) for parts in zip(*runs)]
        results = [np.asarray(r, dtype=np.float32) for r in results]
        return ModelOutput(results[0], results[1], results[2] if with_maps else None)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"QPMOnnx({c.model_type}, backbone={c.backbone.name}, classes={c.num_classes}, "
            f"n={c.n_features}, file={self._name}, dtype={self.record.dtype}, "
            f"providers={self.providers})"
        )


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"
