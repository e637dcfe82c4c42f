"""Publishing rules for checkpoints whose weights qpm-zoo did not train (torch-free)."""

from __future__ import annotations

from pathlib import Path

from qpm_zoo.card import RecipeMetadata
from qpm_zoo.config import QPMConfig
from qpm_zoo.errors import QPMError


class LicenseRequiredError(QPMError, ValueError):
    """Converted weights were about to be published without a license chosen for them."""


def check_license(config: QPMConfig, folder: Path) -> None:
    """Weights made by others (a `provenance`) are published only under an explicit license:
    the authors' releases state none, so no default can be assumed for them."""
    if config.provenance is None:
        return
    if RecipeMetadata.from_training(config.training).license is None:
        raise LicenseRequiredError(
            f"{folder}: the weights were converted from {config.provenance.file} "
            f"({config.provenance.source}), whose terms are not stated (the authors' repository "
            "has no licence file); set training.publish.license in config.json (import-authors "
            "--license) to the license you may publish them under"
        )
