"""Loading the model the explorer serves: PyTorch (`QPM`) or the ONNX export (`QPMOnnx`, no
torch imported)."""

from __future__ import annotations

from collections.abc import Sequence

from ..explain import InterpretableModel


def load_model(
    source: str,
    *,
    onnx: bool = False,
    revision: str | None = None,
    device: str = "cpu",
    providers: Sequence[str] | None = None,
) -> InterpretableModel:
    """A checkpoint folder or Hub repo id as QPMOnnx (`onnx=True`) or QPM."""
    if onnx:
        from ..onnx_model import QPMOnnx

        return QPMOnnx.from_pretrained(
            source, revision=revision, providers=list(providers) if providers else None
        )
    import qpm_zoo

    return qpm_zoo.QPM.from_pretrained(source, revision=revision, map_location=device)
