"""`QPMOnnx`: a checkpoint's ONNX export run with onnxruntime, without PyTorch.

A GPU server needs only numpy, Pillow, huggingface_hub, pydantic and onnxruntime-gpu: this module imports
nothing else (preprocessing and explanations come from qpm_zoo's torch-free modules), so
`predict`, `explain_class` and `compare` return the same objects as the PyTorch `QPM`.

Loading is strict, like QPM's: config.json must describe the export (its `onnx` entry, written
by `python -m export onnx`), the file's SHA-256 must match that entry, the head the graph was
exported with (its fingerprint, in the graph's metadata and in the entry) must be the one
config.json explains with, and the graph's inputs and outputs must agree with config.json
(input size, class count, feature count). Each failure is a CheckpointError naming the file.

For servers: `variant="float16"` or `"int8"` loads a variant export, `providers=` takes
onnxruntime's provider names or (name, options) pairs (`cuda_provider`, `tensorrt_provider`
build the usual ones), and `run_bound` keeps inputs and outputs on the device (IO binding).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import CONFIG_NAME, OnnxPrecision, OnnxRecord, OnnxVariant, QPMConfig
from .errors import CheckpointError, InputError, MissingDependencyError
from .explain import InterpretableModel, ModelOutput
from .hub import CheckpointHubMixin, resolve_file

logger = logging.getLogger(__name__)

INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("logits", "features", "feature_maps")

#: Tried in this order when the caller gives no providers; those this onnxruntime build lacks
#: are skipped, and onnxruntime falls back to the CPU when CUDA cannot start.
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")

#: Keys of the graph's metadata_props that carry the head's fingerprints (see head_fingerprints).
ASSIGNMENT_KEY = "qpm_zoo.assignment_sha256"
HEAD_KEY = "qpm_zoo.head_sha256"

#: Providers whose sessions run on a GPU: IO binding puts their outputs on the device.
_GPU_PROVIDERS = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}

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


def assignment_fingerprint(config: QPMConfig) -> str:
    """SHA-256 of what config.json says the head computes: the selected channels, each class's
    features, weights and bias. Recomputed at load time from config.json alone."""
    a = config.assignment
    facts = {
        "selected_features": [int(i) for i in config.selected_features],
        "class_features": [[int(j) for j in row] for row in a.class_features],
        "class_weights": None if a.class_weights is None else [list(r) for r in a.class_weights],
        "bias": None if a.bias is None else list(a.bias),
        "num_classes": config.num_classes,
    }
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def head_fingerprints(config: QPMConfig, mean: np.ndarray, std: np.ndarray) -> dict[str, str]:
    """The two fingerprints an export carries (metadata) and its record keeps:
    `assignment_sha256` (config.json's part of the head) and `head_sha256`, which adds the
    features' normalisation μ and σ (in the weights only, so checked graph against record)."""
    assignment = assignment_fingerprint(config)
    digest = hashlib.sha256(assignment.encode())
    for values in (mean, std):
        digest.update(np.ascontiguousarray(values, dtype="<f4").tobytes())
    return {"assignment_sha256": assignment, "head_sha256": digest.hexdigest()}


def cuda_provider(device_id: int = 0, **options: Any) -> tuple[str, dict[str, Any]]:
    """("CUDAExecutionProvider", options) for `providers=`; cuDNN picks its fastest
    convolutions once per input shape (`cudnn_conv_algo_search`), which fixed-size images suit.
    Further keyword options are onnxruntime's CUDA provider options, passed as they are."""
    return "CUDAExecutionProvider", {
        "device_id": device_id,
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "do_copy_in_default_stream": True,
        **options,
    }


def tensorrt_provider(
    engine_cache: str | os.PathLike,
    device_id: int = 0,
    fp16: bool = False,
    max_workspace_bytes: int | None = None,
    **options: Any,
) -> tuple[str, dict[str, Any]]:
    """("TensorrtExecutionProvider", options) that caches built engines (and timing data) in
    `engine_cache`, so only the first start of a server pays TensorRT's minutes-long build.

    `fp16=True` lets TensorRT pick half-precision kernels for the float32 export. Use it before
    cuda_provider() and "CPUExecutionProvider" in `providers=`: nodes TensorRT cannot run go
    to the next provider.
    """
    cache = os.fspath(engine_cache)
    Path(cache).mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "device_id": device_id,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
        "trt_fp16_enable": fp16,
    }
    if max_workspace_bytes is not None:
        settings["trt_max_workspace_size"] = int(max_workspace_bytes)
    return "TensorrtExecutionProvider", {**settings, **options}


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
        variant: OnnxPrecision | None = None,
    ):
        """Check `model_file` (a path, or the export's bytes) against `config` and open a session.

        `variant` says which of config.json's exports `model_file` is (None: the main one).
        `source` names config.json in error messages.
        """
        self.config = config
        self.record = OnnxRecord.from_config(config, source)
        self.variant = variant
        self.variant_record = select_variant(self.record, variant, source)
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
        self._check_head(source)

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
        variant: OnnxPrecision | None = None,
    ) -> QPMOnnx:
        """The ONNX export config.json records, checked against it.

        `variant` picks a float16 or int8 variant export instead of the main (float32) one.
        `providers` defaults to CUDA then CPU; `model.providers` says what runs. `verbose=True`
        lets onnxruntime print its warnings (e.g. why CUDA could not start).
        """
        import_onnxruntime()  # fail before downloading anything large
        record = OnnxRecord.from_config(config, str(config_path))
        chosen = select_variant(record, variant, str(config_path))
        file = record.file if chosen is None else chosen.file
        onnx_path = resolve_file(
            model_id,
            file,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            force_download=force_download,
            required=False,
        )
        if onnx_path is None:
            raise CheckpointError(
                f"{model_id}: config.json describes an ONNX export '{file}', but the "
                "checkpoint has no such file; create it with: python -m export onnx MODEL_DIR"
                + ("" if variant is None else f" --precision {variant}")
            )
        return cls(
            config,
            onnx_path,
            providers=providers,
            session_options=session_options,
            verbose=verbose,
            source=str(config_path),
            variant=variant,
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
        expected = self.record.sha256 if self.variant is None else self.variant_record.sha256
        field = "onnx.sha256" if self.variant is None else f"onnx.variants.{self.variant}.sha256"
        if actual != expected:
            raise CheckpointError(
                f"{self._name}: SHA-256 {actual[:12]}… does not match '{field}' "
                f"{expected[:12]}… in {source}: the file is damaged or from another "
                "export; re-export with: python -m export onnx MODEL_DIR"
            )

    def _check_head(self, source: str) -> None:
        """The graph's head must be the one config.json explains with: otherwise predictions
        change and explanations stop adding up. The record's fingerprints are checked against
        config.json, the graph's metadata against the record."""
        record = self.record
        if record.assignment_sha256 is None or record.head_sha256 is None:
            logger.warning(
                "%s: 'onnx' has no head fingerprint (an export older than qpm-zoo 0.3?); its head "
                "cannot be checked against config.json; re-export with: python -m export onnx",
                source,
            )
            return
        actual = assignment_fingerprint(self.config)
        if record.assignment_sha256 != actual:
            raise CheckpointError(
                f"{source}: 'onnx.assignment_sha256' {record.assignment_sha256[:12]}… is not the "
                f"fingerprint {actual[:12]}… of this config.json's assignment and selected "
                "features: the export is from another checkpoint; re-export with: "
                "python -m export onnx MODEL_DIR"
            )
        metadata = self.session.get_modelmeta().custom_metadata_map
        for key, wanted in (
            (ASSIGNMENT_KEY, record.assignment_sha256),
            (HEAD_KEY, record.head_sha256),
        ):
            found = metadata.get(key)
            if found != wanted:
                got = "none" if found is None else f"{found[:12]}…"
                raise CheckpointError(
                    f"{self._name}: the graph's head fingerprint '{key}' is {got}, but {source} "
                    f"records {wanted[:12]}…: the graph is from another export; re-export with: "
                    "python -m export onnx MODEL_DIR"
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
        batch = self._checked_batch(pixel_values)
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

    def _checked_batch(self, pixel_values: np.ndarray) -> np.ndarray:
        """The batch as the graph takes it (contiguous, its input type), or an InputError."""
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
        return np.ascontiguousarray(batch, dtype=self._input_type)

    @property
    def device(self) -> str:
        """Where the session's outputs live when IO-bound: "cuda" on a GPU provider, else "cpu"."""
        return _GPU_PROVIDERS.get(self.providers[0], "cpu")

    def run_bound(
        self, pixel_values: Any, with_maps: bool = False, device_id: int = 0
    ) -> dict[str, Any]:
        """Run a batch with IO binding: outputs stay on the session's device as OrtValues.

        `pixel_values` is a numpy batch (copied to the device once) or an OrtValue already on
        it, e.g. from a GPU decoding step, so a server chaining GPU work copies nothing back;
        call `.numpy()` on an output to fetch it. Returns {output name: OrtValue}.
        """
        ort = import_onnxruntime()
        if isinstance(pixel_values, np.ndarray):
            batch = self._checked_batch(pixel_values)
            pixel_values = ort.OrtValue.ortvalue_from_numpy(batch, self.device, device_id)
        if self._fixed_batch is not None and pixel_values.shape()[0] != self._fixed_batch:
            raise InputError(f"{self._name} runs one image at a time; IO binding needs batch 1")
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(INPUT_NAME, pixel_values)
        names = OUTPUT_NAMES if with_maps else OUTPUT_NAMES[:2]
        for name in names:
            binding.bind_output(name, self.device, device_id)
        self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.get_outputs()))

    def __repr__(self) -> str:
        c = self.config
        dtype = self.record.dtype if self.variant is None else self.variant
        return (
            f"QPMOnnx({c.model_type}, backbone={c.backbone.name}, classes={c.num_classes}, "
            f"n={c.n_features}, file={self._name}, dtype={dtype}, "
            f"providers={self.providers})"
        )


def select_variant(
    record: OnnxRecord, variant: str | None, source: str = CONFIG_NAME
) -> OnnxVariant | None:
    """The variant record `variant` names (None: the main export), or an error naming those
    config.json has."""
    if variant is None:
        return None
    if variant not in ("float16", "int8"):
        raise InputError(f"variant must be 'float16', 'int8' or None, got {variant!r}")
    if variant not in record.variants:
        have = sorted(record.variants) or "none"
        raise CheckpointError(
            f"{source}: has no '{variant}' ONNX variant (variants: {have}); create it with: "
            f"python -m export onnx MODEL_DIR "
            + ("--precision fp16" if variant == "float16" else "--quantize int8 --calibration DIR")
        )
    return record.variants[variant]


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"
