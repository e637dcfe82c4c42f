"""Turn a QPM into the ONNX graph docs/checkpoint.md specifies, with torch.onnx's dynamo exporter.

The graph takes normalised `pixel_values [batch, 3, H, W]` (the torch-free preprocessing runs
before it) and returns `logits [batch, C]`, `features [batch, n]` and `feature_maps
[batch, n, h, w]`, so a runtime can explain predictions and localise features without torch.
The batch is dynamic; the spatial size is the checkpoint's fixed preprocessing size.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qpm_zoo.model import QPM
from qpm_zoo.onnx_model import (
    ASSIGNMENT_KEY,
    HEAD_KEY,
    INPUT_NAME,
    OUTPUT_NAMES,
    head_fingerprints,
)

from .errors import ExportError
from .pruning import reading_all_channels, selected_channels_only

#: `exporter.last_layer` in config.json's record: did the backbone's last layer compute only the
#: head's channels (export/pruning.py)?
CHANNELS_RECORD = {True: "selected channels only", False: "all channels"}

#: protobuf cannot serialise a single message above 2 GiB.
_PROTOBUF_LIMIT = 2**31 - 1


class ExportGraph(nn.Module):
    """pixel_values → (logits, features, feature_maps), the three named outputs of model.onnx.

    With `half=True` the backbone computes in float16 while the head stays in float32: the head
    divides by the features' standard deviations, which would magnify float16 rounding, and it
    costs nothing. Inputs and outputs are float32 either way.
    """

    def __init__(self, model: QPM, half: bool = False, all_channels: bool = False):
        super().__init__()
        self.dtype = torch.float16 if half else torch.float32
        backbone, head = model.backbone, model.head
        pruned = None if all_channels else selected_channels_only(backbone, head.selection)
        if pruned is not None:  # the same outputs, computing only the channels the head reads
            backbone, head = pruned, reading_all_channels(head)
        self.selected_channels_only = pruned is not None
        self.backbone = copy.deepcopy(backbone).to(self.dtype) if half else backbone
        self.head = head
        self.eval()

    def forward(
        self, pixel_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.backbone(pixel_values.to(self.dtype)).float()
        out = self.head(maps)
        return out.logits, out.features, out.feature_maps


@dataclass(frozen=True)
class ExportedGraph:
    """The serialised graph and the facts config.json records about it."""

    data: bytes
    opset: int
    dtype: str
    feature_map_size: tuple[int, int]
    selected_channels_only: bool  #: the backbone's last layer computes only the head's n channels


def head_metadata(model: QPM) -> dict[str, str]:
    """The head's fingerprints (qpm_zoo.onnx_model.head_fingerprints) of `model`."""
    return head_fingerprints(
        model.config,
        model.head.mean.detach().cpu().numpy(),
        model.head.std.detach().cpu().numpy(),
    )


def stamp_metadata(proto: Any, fingerprints: dict[str, str]) -> None:
    """Write the head's fingerprints into the graph's metadata_props (replacing earlier ones),
    where QPMOnnx compares them with config.json's record."""
    keys = {"assignment_sha256": ASSIGNMENT_KEY, "head_sha256": HEAD_KEY}
    kept = [p for p in proto.metadata_props if p.key not in keys.values()]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for name, key in keys.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, fingerprints[name]


def export_graph(
    model: QPM, opset: int, half: bool = False, all_channels: bool = False
) -> ExportedGraph:
    """Export `model` to one self-contained ONNX file's bytes (weights inside, dynamic batch),
    its head's fingerprints in the graph's metadata. Unless `all_channels`, a ResNet's last
    block computes only the channels the head reads (export/pruning.py)."""
    graph = ExportGraph(model.eval(), half=half, all_channels=all_channels)
    _, height, width = model.config.preprocessing.input_size
    # Batch 2, not 1: torch.export specialises a dimension whose example size is 1.
    example = torch.zeros(2, 3, height, width)
    with torch.inference_mode():
        maps_size = tuple(graph(example)[2].shape[2:])
    batch = torch.export.Dim("batch", min=1)
    messages = io.StringIO()
    try:
        # The exporter reports its steps on stdout and warns about internals: keep both out of
        # our output, and show them only if the export fails.
        with contextlib.redirect_stdout(messages), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                verbose=False,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                external_data=False,
                optimize=True,
            )
        proto = program.model_proto
    except Exception as e:
        log = messages.getvalue().strip()
        raise ExportError(
            f"torch.onnx.export (dynamo) failed for backbone '{model.config.backbone.name}': "
            f"{type(e).__name__}: {e}" + (f"\nexporter log:\n{log}" if log else "")
        ) from e
    found = max(
        (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None
    )
    if found != opset:
        raise ExportError(f"asked for opset {opset}, the exporter produced opset {found}")
    stamp_metadata(proto, head_metadata(model))
    if proto.ByteSize() > _PROTOBUF_LIMIT:
        raise ExportError(
            f"the graph is {proto.ByteSize() / 2**30:.1f} GiB, above protobuf's 2 GiB limit for one "
            "file; try --fp16"
        )
    return ExportedGraph(
        data=proto.SerializeToString(),
        opset=opset,
        dtype="float16" if half else "float32",
        feature_map_size=(int(maps_size[0]), int(maps_size[1])),
        selected_channels_only=graph.selected_channels_only,
    )


def check_graph(data: bytes) -> None:
    """onnx.checker with full shape inference; a failure is an ExportError."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"onnx.checker rejects the exported graph: {e}") from None
