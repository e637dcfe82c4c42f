"""Strict, typed reading of configuration mappings (config.json, training configs).

Every error names the file and the dotted field path, so a typo or a wrong type is reported
where it is, before anything expensive runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError


class FieldReader:
    """Reads typed fields out of one JSON/YAML mapping, naming `source: field` in every error.

    `error` is the exception class raised (ConfigError for config.json; the training side
    passes its own). Call `reject_unknown()` last so misspelt keys are errors, not ignored.
    """

    def __init__(
        self, data: Any, source: str, path: str = "", error: type[Exception] = ConfigError
    ):
        self.error_class = error
        if not isinstance(data, Mapping):
            where = f"field '{path}'" if path else "the top level"
            raise error(f"{source}: {where} must be a mapping, got {kind(data)}")
        self.data = data
        self.source = source
        self.path = path
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> Exception:
        return self.error_class(f"{self.source}: field '{self.name(key)}' {problem}")

    def get(self, key: str, default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error_class(
                    f"{self.source}: required field '{self.name(key)}' is missing"
                )
            return default
        return self.data[key]

    def int(self, key: str, default: Any = ..., minimum: int | None = None) -> int:
        value = self.get(key, default)
        if value is default and default is not ...:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {kind(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def float(self, key: str, default: Any = ...) -> float:
        value = self.get(key, default)
        if value is default and default is not ...:
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise self.error(key, f"must be a finite number, got {kind(value)}")
        return float(value)

    def str(self, key: str, default: Any = ..., choices: Sequence[str] | None = None) -> str:
        value = self.get(key, default)
        if value is default and default is not ...:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {kind(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {list(choices)}, got {value!r}")
        return value

    def bool(self, key: str, default: Any = ...) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {kind(value)}")
        return value

    def dict(self, key: str, default: Any = ...) -> dict:
        value = self.get(key, default)
        if value is default and default is not ...:
            return value
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a JSON object, got {kind(value)}")
        return dict(value)

    def list(self, key: str, default: Any = ...) -> list:
        value = self.get(key, default)
        if value is default and default is not ...:
            return value
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, got {kind(value)}")
        return value

    def int_list(self, key: str, default: Any = ...) -> list[int]:
        value = self.list(key, default)
        if value is default and default is not ...:
            return value
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.error(key, f"must hold integers; item {i} is {kind(v)}")
        return list(value)

    def float_list(self, key: str, default: Any = ...) -> list[float]:
        value = self.list(key, default)
        if value is default and default is not ...:
            return value
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise self.error(key, f"must hold finite numbers; item {i} is {kind(v)}")
        return [float(v) for v in value]

    def str_list(self, key: str, default: Any = ...) -> list[str] | None:
        value = self.get(key, default)
        if value is None or (value is default and default is not ...):
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return list(value)

    def sub(self, key: str) -> FieldReader:
        return FieldReader(self.get(key), self.source, self.name(key), self.error_class)

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            where = f"in '{self.path}'" if self.path else "at the top level"
            raise self.error_class(f"{self.source}: unknown field(s) {unknown} {where}")


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__
