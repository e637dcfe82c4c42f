"""Matplotlib, imported only when a figure is made, and figures written to disk atomically.

Figures are plain `matplotlib.figure.Figure` objects on the Agg canvas: no pyplot, no display,
no global figure registry to leak memory in long runs; `import qpm_zoo` stays light.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ..config import write_bytes_atomic
from ..errors import InputError, MissingDependencyError

#: Resolution of saved figures unless the caller asks for another.
DEFAULT_DPI = 150


def require_matplotlib(purpose: str) -> Any:
    """The matplotlib module, or MissingDependencyError naming `purpose` (what needs it)."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", "viz", purpose) from None
    return matplotlib


def new_figure(purpose: str, width: float, height: float) -> Any:
    """An empty Figure of `width` × `height` inches with constrained layout on an Agg canvas.

    `purpose` names what needs matplotlib, for the error when it is not installed.
    """
    require_matplotlib(purpose)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def check_figure_path(path: str | os.PathLike) -> tuple[Path, str]:
    """(path, format) for a figure file, or InputError: a folder, or an extension matplotlib
    cannot write. Call it before long work so a typo fails at once."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name such as {path / 'figure.png'}")
    require_matplotlib(f"writing {path}")
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        given = f"'.{fmt}'" if fmt else "no extension"
        raise InputError(
            f"{path}: cannot tell the figure format from {given}; end the name with one of "
            + ", ".join(f".{f}" for f in ("png", "pdf", "svg", "jpg"))
        )
    return path, fmt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = DEFAULT_DPI) -> Path:
    """Write `fig` to `path` (format from the extension: .png, .pdf, .svg, .jpg, ...).

    The file appears complete or not at all (rendered in memory, then written to a temporary
    file beside it and renamed). Missing parent folders are created. Returns the path written.
    """
    path, fmt = check_figure_path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, facecolor=fig.get_facecolor())
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError as e:
        raise InputError(f"{path}: cannot write the figure ({e.strerror or e})") from None
    return path
