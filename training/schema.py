"""What the training configs are built from: strict pydantic sections, the field types they share,
and pydantic's ValidationError turned into one line naming the file, the dotted field and the
value (`configs/demo.yaml: field 'dense.lr' must be positive, got -1.0`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt
from pydantic import ValidationError as PydanticValidationError

from qpm_zoo.validation import dotted

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """A config section: unknown keys are errors, values are not coerced (no '3' for 3), no NaN."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes`, validated as if they had been in the file."""
        return type(self).model_validate({**self.model_dump(), **changes})


class FieldProblem(ValueError):
    """Raised by a cross-field check to say which field of its section is wrong."""

    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field


def in_interval(low: float, high: float, high_open: bool = False) -> AfterValidator:
    """low <= value <= high (or < high), said as [low, high] or [low, high)."""

    def check(value: float) -> float:
        if not (low <= value < high if high_open else low <= value <= high):
            raise ValueError(
                f"must be in [{low:g}, {high:g}{')' if high_open else ']'}, got {value:g}"
            )
        return value

    return AfterValidator(check)


PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveFloat = Annotated[StrictFloat, Field(gt=0)]
NonNegativeFloat = Annotated[StrictFloat, Field(ge=0)]
Probability = Annotated[StrictFloat, in_interval(0.0, 1.0)]


def validate(
    model: type[M],
    data: Any,
    *,
    source: str,
    path: str,
    error: type[Exception],
    context: dict | None = None,
) -> M:
    """`model` from `data`, or `error` with one line about the first problem pydantic found.

    `path` is where `data` sits in the file ('' for the whole file, 'data' for its data section).
    """
    try:
        return model.model_validate(data, context=context)
    except PydanticValidationError as e:
        raise error(describe(e, source, path)) from None


def describe(error: PydanticValidationError, source: str, path: str = "") -> str:
    """The first of pydantic's errors as `SOURCE: field 'a.b' PROBLEM`."""
    errors = error.errors()
    first = errors[0]
    loc = [*path.split("."), *first["loc"]] if path else list(first["loc"])
    if first["type"] == "extra_forbidden":
        parent = first["loc"][:-1]
        unknown = sorted(
            str(e["loc"][-1])
            for e in errors
            if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent
        )
        where = dotted(loc[:-1])
        return f"{source}: unknown field(s) {unknown} " + (
            f"in '{where}'" if where else "at the top level"
        )
    if first["type"] == "missing":
        return f"{source}: required field '{dotted(loc)}' is missing"
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblem):
        loc.append(cause.field)
    where = f"field '{dotted(loc)}'" if loc else "the top level"
    return f"{source}: {where} {_problem(first, cause)}"


#: pydantic's type errors (less _type/_parsing/_from_float) → what the field must be
_EXPECTED = {
    "int": "an integer",
    "float": "a finite number",
    "finite_number": "a finite number",
    "bool": "true or false",
    "string": "a string",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
    "list": "a list",
    "tuple": "a list",
}

#: pydantic's bound errors → (its context key, the bound said in words)
_BOUNDS = {
    "greater_than": ("gt", lambda b: "must be positive" if b == 0 else f"must be above {b}"),
    "greater_than_equal": (
        "ge",
        lambda b: "must not be negative" if b == 0 else f"must be at least {b}",
    ),
    "less_than": ("lt", lambda b: f"must be below {b}"),
    "less_than_equal": ("le", lambda b: f"must be at most {b}"),
}


def _problem(error: dict, cause: Any) -> str:
    """What is wrong with one field, in the words of today's messages."""
    if isinstance(cause, Exception):  # our validators' own message
        return str(cause)
    kind_of_error, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    expected = _EXPECTED.get(re.sub(r"_(type|parsing|from_float)$", "", kind_of_error))
    if expected is not None:
        return f"must be {expected}, got {kind(value)}"
    if kind_of_error == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx["expected"])  # "'a', 'b' or 'c'"
        return f"must be one of {choices}, got {value!r}"
    if kind_of_error in _BOUNDS:
        key, words = _BOUNDS[kind_of_error]
        return f"{words(ctx[key])}, got {value}"
    return error["msg"][0].lower() + error["msg"][1:]


def kind(value: Any) -> str:
    """A value as an error message names it: `str 'three'`, `boolean True`, `null`, `list`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__
