"""Any dataset in the ImageFolder layout: ROOT/train/<class>/*.jpg and ROOT/test/<class>/*.

Class indices follow the sorted folder names (as in torchvision and timm). Both splits must
hold the same classes and no class folder may be empty; both are checked before training.
"""

from __future__ import annotations

from pathlib import Path

from qpm_zoo.preprocess import IMAGE_EXTENSIONS, list_images

from ..errors import DataConfigError
from .base import DataSplits, FileDataset, ImageFile, require_dir
from .config import DataConfig

SPLIT_FOLDERS = ("train", "test")


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_files(cfg: DataConfig) -> dict[str, dict[str, list[Path]]]:
    """split → class name → image files, after checking the layout."""
    root = require_dir(cfg.dataset_root, "a dataset folder with train/ and test/ inside")
    layout = "ROOT/train/<class>/<images> and ROOT/test/<class>/<images>"
    dirs = {s: require_dir(root / s, f"one subfolder per class ({layout})") for s in SPLIT_FOLDERS}
    classes = {s: _class_folders(d) for s, d in dirs.items()}
    for split, names in classes.items():
        if not names:
            raise DataConfigError(f"{dirs[split]}: holds no class folders; expected {layout}")
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        parts = []
        if only_train:
            parts.append(f"only in {dirs['train']}: {only_train}")
        if only_test:
            parts.append(f"only in {dirs['test']}: {only_test}")
        raise DataConfigError(
            f"{root}: train and test must hold the same class folders; " + "; ".join(parts)
        )
    files: dict[str, dict[str, list[Path]]] = {}
    for split, names in classes.items():
        files[split] = {}
        for name in names:
            images = list_images(dirs[split] / name)
            if not images:
                raise DataConfigError(
                    f"{dirs[split] / name}: class folder holds no images (extensions {', '.join(IMAGE_EXTENSIONS)})"
                )
            files[split][name] = images
    return files


def open_splits(cfg: DataConfig) -> DataSplits:
    files = check_files(cfg)
    class_names = list(files["train"])
    splits = []
    for split in SPLIT_FOLDERS:
        paths: list[ImageFile] = []
        labels: list[int] = []
        for label, name in enumerate(class_names):
            paths += [ImageFile(p) for p in files[split][name]]
            labels += [label] * len(files[split][name])
        splits.append(FileDataset(paths, labels, class_names, split))
    return DataSplits("imagefolder", splits[0], splits[1], class_names)
