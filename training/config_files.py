"""Reading training config files: YAML or TOML, `extends:` a base file, dotted overrides.

Merging (a file over the one it extends, `--set dense.epochs=2` over both) is OmegaConf's; the
YAML is read with `yaml.safe_load`. Validation is the config models' (training/config.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import FitConfigError


def read_config_file(path: Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """A config file's mapping, with `extends:` followed and `overrides` (dotted keys) set."""
    config = _merged(Path(path), ())
    try:
        for dotted, value in (overrides or {}).items():
            OmegaConf.update(config, dotted, value, merge=False)
    except OmegaConfBaseException as e:
        raise FitConfigError(f"{path}: cannot apply the overrides ({_one_line(e)})") from None
    return OmegaConf.to_container(config, resolve=False)


def _merged(path: Path, chain: tuple[Path, ...]) -> Any:
    """`path`'s values merged over those of the file it extends (relative to it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = f" (extended by {chain[-1]})" if chain else ""
        raise FitConfigError(f"{path}: no such config file{where}") from None
    except OSError as e:
        raise FitConfigError(f"{path}: cannot be read ({e})") from None
    data = parse_config_text(text, path)
    base = data.pop("extends", None)
    try:
        config = OmegaConf.create(data)
    except OmegaConfBaseException as e:
        raise FitConfigError(f"{path}: {_one_line(e)}") from None
    if base is None:
        return config
    if not isinstance(base, str):
        raise FitConfigError(f"{path}: field 'extends' must be the path of another config file")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise FitConfigError(f"{path}: 'extends' forms a cycle through {base_path}")
    try:
        return OmegaConf.merge(_merged(base_path, (*chain, path.resolve())), config)
    except OmegaConfBaseException as e:
        raise FitConfigError(
            f"{path}: cannot be merged over {base_path} ({_one_line(e)})"
        ) from None


def parse_config_text(text: str, path: Path) -> dict:
    """The mapping a .yaml/.yml or .toml file holds (FitConfigError naming the line if invalid)."""
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise FitConfigError(f"{path}: not valid TOML ({e})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_loader_without_aliases())  # a SafeLoader
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark
            where = (
                f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            )
            raise FitConfigError(
                f"{path}: not valid YAML{where}: {e.problem or e.context}"
            ) from None
        except yaml.YAMLError as e:
            raise FitConfigError(f"{path}: not valid YAML ({_one_line(e)})") from None
        if not isinstance(data, dict):
            raise FitConfigError(f"{path}: the top level must be a mapping")
        return data
    raise FitConfigError(
        f"{path}: unknown config format '{path.suffix}' (use .yaml, .yml or .toml)"
    )


def _loader_without_aliases() -> type:
    """yaml.SafeLoader refusing aliases (`*name`): ten nested aliases expand a 1 KB file to
    billions of values (a "billion laughs" bomb), and no training config needs them."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "aliases (*name) are not accepted in training configs",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

    return Loader


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items as {dotted key: value}, VALUE read as YAML (2 → int, [1, 2] → list)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FitConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.load(value, Loader=_loader_without_aliases())
        except yaml.YAMLError as e:
            raise FitConfigError(
                f"--set {item!r}: VALUE is not valid YAML ({_one_line(e)})"
            ) from None
    return out


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
