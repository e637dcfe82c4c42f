"""The explanation core and preprocessing work on a machine without PyTorch (the ONNX server case)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        blocked = ("torch", "torchvision", "timm")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
    )


def test_core_modules_import_and_work_without_torch(qpm_dir, image_file):
    result = run_without_torch(
        f"""
        import json, sys
        import qpm_zoo
        from qpm_zoo import GlobalExplainer, MissingDependencyError, QPMConfig
        from qpm_zoo.preprocess import ImagePreprocessor
        from qpm_zoo import cli, config, explain, hub, preprocess  # noqa: F401

        model = GlobalExplainer.from_pretrained({str(qpm_dir)!r})
        print(json.dumps(model.explain_class("Blue Jay").to_dict()))
        cmp = model.compare("Cardinal", 1)
        batch, _ = ImagePreprocessor(model.config.preprocessing)({str(image_file)!r})
        assert batch.shape == (1, 3, 64, 64), batch.shape
        try:
            qpm_zoo.QPM
        except MissingDependencyError as e:
            assert "qpm-zoo[torch]" in str(e), e
        else:
            raise AssertionError("QPM imported without torch")
        assert cli.main(["explain", {str(qpm_dir)!r}, "Cardinal"]) == 0
        assert not any(m.split(".")[0] in ("torch", "timm") for m in sys.modules), "torch was imported"
        print("OK")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")
    assert '"label": "Blue Jay"' in result.stdout


def test_blocker_really_blocks_torch():
    result = run_without_torch("import torch")
    assert result.returncode != 0 and "blocked by the test" in result.stderr
