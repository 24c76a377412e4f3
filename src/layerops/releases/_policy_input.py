"""Reading policy input: a YAML loader that refuses duplicate keys, and pydantic's validation
errors as the one-line messages of `PolicyError`."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic_core import ErrorDetails


class At(ValueError):
    """A problem found by a validator at a key below the model it validates (`key`, relative)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


_TYPES = {
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "int_type": "expected a whole number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
}


def path_of(prefix: str, error: ErrorDetails) -> str:
    """The key path of `error` below `prefix` (`models.iris`), e.g. `models.iris.ab.variants[1]`."""
    path = prefix
    loc: list[int | str] = list(error["loc"])
    context: dict[str, Any] = dict(error.get("ctx") or {})
    cause = context.get("error")
    if isinstance(cause, At):
        loc.extend(cause.key.split("."))
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def describe(error: ErrorDetails) -> str:
    """What is wrong, without the key path: `unknown key`, `expected a number, got 'sixty'`..."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    if kind in _TYPES:
        value = error["input"]
        shown = type(value).__name__ if isinstance(value, dict | list | tuple) else repr(value)
        return f"{_TYPES[kind]}, got {_shorten(shown)}"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Input ")
    return message[:1].lower() + message[1:] if message[1:2].islower() else message


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key if isinstance(key, str | int | float | bool) else id(key))
        return super().construct_mapping(node, deep=deep)
