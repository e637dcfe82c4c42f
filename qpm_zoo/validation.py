"""Strict JSON reading with pydantic: value types without Python's silent conversions, a
frozen base model that rejects unknown fields, and one-line ConfigErrors instead of pydantic's
ValidationError (torch-free).

A message names the file, the field path and the value, e.g.
`config.json: preprocessing.std: must hold 3 positive numbers, got [0.5, 0.0, 0.5]`.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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


def _label(value: Any) -> str:
    """A name shown to people: not empty, no control characters (a terminal would act on them)."""
    text = _text(value)
    if not text.strip():
        raise ValueError(f"must be a non-empty name, got {text!r}")
    odd = [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if odd:
        raise ValueError(f"must not hold control characters, got {text!r}")
    return text


def _json_value(value: Any, where: str = "") -> Any:
    """`value` if it is plain JSON with finite numbers (NaN cannot be written back to a file)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"{where or 'value'} must be a finite number, got {value}")
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _wrong_type("a string key", key)
            out[key] = _json_value(item, f"{where}.{key}" if where else key)
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise _wrong_type("a JSON value", value)


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _wrong_type("a JSON object", value)
    return _json_value(value)


Integer = Annotated[int, BeforeValidator(_integer)]
Count = Annotated[int, Field(ge=1), BeforeValidator(_integer)]  #: a positive integer
Number = Annotated[float, BeforeValidator(_number)]
Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Label = Annotated[str, BeforeValidator(_label)]  #: a class or feature name shown to people
#: a free-form JSON object (metrics, recipes): any nesting, but finite numbers only
JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_object)]

#: True while `validated(..., from_file=True)` reads a file: then the fields a model lists in
#: `_required_in_files` must be present (their defaults serve code that builds models only).
#: A context variable, not pydantic's validation context, which a custom `__init__` (ours,
#: below) does not pass on to nested models.
_reading_file: ContextVar[bool] = ContextVar("qpm_zoo_reading_file", default=False)


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
    #: Fields a file must state although code may leave them to their defaults (set with
    #: `required_in_files`, which also checks them).
    _required_in_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **data: Any) -> None:
        """Keyword construction, validated like a file (errors name the class)."""
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise InvalidFields(e, type(self).__name__) from None

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        if cls._required_in_files:
            required = target.setdefault("required", [])
            required.extend(n for n in cls._required_in_files if n not in required)
        return schema

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


def required_in_files(*names: str) -> Any:
    """A model's check that a file states `names`, which code may leave to their defaults: what
    a model's predictions depend on is never guessed from a file that does not say it.

    Use in the class body as `_stated = required_in_files("a", "b")` beside
    `_required_in_files = ("a", "b")` (which the JSON Schema lists as required).
    """

    def check(cls: type, data: Any) -> Any:
        if _reading_file.get() and isinstance(data, Mapping):
            for name in names:
                if name not in data:
                    raise FieldProblem(
                        name, "required field is missing (predictions depend on it; no default)"
                    )
        return data

    return model_validator(mode="before")(classmethod(check))  # type: ignore[arg-type]


def validated(model: type[M], data: Any, source: str, *, from_file: bool = False) -> M:
    """`model` validated from `data`; a failure is one ConfigError line naming `source`.
    `from_file`: `data` is a file's content, so `_required_in_files` fields must be in it."""
    token = _reading_file.set(from_file)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise config_error(e, source) from None
    finally:
        _reading_file.reset(token)


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
        where = f"in '{dotted(parent)}'" if parent else "at the top level"
        return ConfigError(f"{source}: unknown field(s) {names} {where}")
    first = errors[0]
    path = dotted((*outer, *first["loc"]))
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


def dotted(loc: Any) -> str:
    """A pydantic error location as a field path: ('assignment', 'class_features', 2) →
    'assignment.class_features[2]' (empty parts, which pydantic adds for some unions, dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part:
            out += f".{part}" if out else str(part)
    return out
