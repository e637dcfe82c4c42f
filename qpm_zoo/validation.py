"""Strict JSON reading with pydantic: value types without Python's silent conversions, a
frozen base model that rejects unknown fields, and one-line ConfigErrors instead of pydantic's
ValidationError (torch-free).

A message names the file, the field path and the value, e.g.
`config.json: preprocessing.std: must hold 3 positive numbers, got [0.5, 0.0, 0.5]`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from .errors import ConfigError

M = TypeVar("M", bound=BaseModel)


# -- JSON's scalars without Python's silent conversions ('2' → 2, true → 1) ------------------
def kind(value: Any) -> str:
    """How a value reads in an error message: its JSON type and, for scalars, the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


def _wrong_type(expected: str, value: Any) -> ValueError:
    # a ValueError, not a TypeError: pydantic turns only ValueErrors into validation errors
    return ValueError(f"must be {expected}, got {kind(value)}")


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _wrong_type("an integer", value)
    return int(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _wrong_type("a number", value)
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type("a string", value)
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type("true or false", value)
    return value


Integer = Annotated[int, BeforeValidator(_integer)]
Count = Annotated[int, Field(ge=1), BeforeValidator(_integer)]  #: a positive integer
Number = Annotated[float, BeforeValidator(_number)]
Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]


# -- models and their errors ----------------------------------------------------------------
class FieldProblem(ValueError):
    """A consistency problem found by a model-level check, at `path` below the model."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class InvalidFields(ConfigError):
    """A model built from keywords failed validation. pydantic also runs a custom `__init__`
    for nested models, so this may be caught by an outer validation: it keeps the original
    errors, and the outer message is made from them with the outer field path in front."""

    def __init__(self, error: ValidationError, source: str):
        super().__init__(str(config_error(error, source)))
        self.error = error


class StrictModel(BaseModel):
    """Frozen, no unknown fields: a config.json is read exactly as written or not at all."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Optional parts config.json leaves out when absent (rather than writing null).
    _omitted_when_none: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **data: Any) -> None:
        """Keyword construction, validated like a file (errors name the class)."""
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise InvalidFields(e, type(self).__name__) from None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self._omitted_when_none:
            if data.get(name, ...) is None:
                del data[name]
        return data

    def to_dict(self) -> dict:
        """The plain JSON form (what config.json holds)."""
        return self.model_dump(mode="json")


def validated(model: type[M], data: Any, source: str) -> M:
    """`model` validated from `data`; a failure is one ConfigError line naming `source`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise config_error(e, source) from None


#: pydantic's error types in our words (the rest keep pydantic's message).
_PROBLEMS = {
    "missing": "required field is missing",
    "model_type": "must be a JSON object, got {kind}",
    "model_attributes_type": "must be a JSON object, got {kind}",
    "dict_type": "must be a JSON object, got {kind}",
    "tuple_type": "must be a list, got {kind}",
    "list_type": "must be a list, got {kind}",
    "literal_error": "must be {expected}, got {kind}",
    "greater_than_equal": "must be at least {ge}, got {kind}",
}


def config_error(error: ValidationError, source: str, outer: tuple = ()) -> ConfigError:
    """One line for a failed validation: the file, the field path, what is wrong, the value.

    Unknown fields are reported first (a misspelt name also makes the right one "missing").
    `outer` is the location of the validated model inside an enclosing one.
    """
    errors = error.errors(include_url=False)
    for e in errors:
        cause = e.get("ctx", {}).get("error")
        if isinstance(cause, InvalidFields):  # a nested model's own __init__ failed
            return config_error(cause.error, source, (*outer, *e["loc"]))
    unknown = [{**e, "loc": (*outer, *e["loc"])} for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        *parent, _ = unknown[0]["loc"]
        names = [e["loc"][-1] for e in unknown if list(e["loc"][:-1]) == parent]
        where = f"in '{_dotted(parent)}'" if parent else "at the top level"
        return ConfigError(f"{source}: unknown field(s) {names} {where}")
    first = errors[0]
    path = _dotted((*outer, *first["loc"]))
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, FieldProblem):
        path = ".".join(p for p in (path, cause.path) if p)
        problem = cause.problem
    elif first["type"] == "value_error":
        problem = str(cause) if cause is not None else first["msg"]
    elif first["type"] in _PROBLEMS:
        problem = _PROBLEMS[first["type"]].format(kind=kind(first["input"]), **first.get("ctx", {}))
    else:
        problem = f"{first['msg'][0].lower()}{first['msg'][1:]}, got {kind(first['input'])}"
    return ConfigError(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")


def _dotted(loc: Any) -> str:
    """('assignment', 'class_features', 2) → 'assignment.class_features[2]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
