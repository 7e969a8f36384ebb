"""The plain values of a web configuration, checked: one message per problem, naming the key.

`Invalid` carries the message; webconfig prefixes it with the file's name.
"""

from __future__ import annotations

MAX_FILE_BYTES = 1 << 20  # no config or PEM file is near this; /dev/zero would be endless


class Invalid(Exception):
    """A problem found while parsing, before the source name is prefixed."""


def read_limited(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(0, f"larger than {MAX_FILE_BYTES} bytes")
    return data


def check_keys(data: dict, where: str, allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            raise Invalid(f"unknown key {key!r} in {where} (allowed: {', '.join(allowed)})")


def mapping(data: dict, key: str, where: str = "") -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"{where + '.' if where else ''}{key} must be a mapping, got {kind(value)}")
    return value


def string(data: dict, key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise Invalid(f"{where}.{key} must be a string, got {kind(value)}")
    return value


def strings(data: dict, key: str, where: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid(f"{where}.{key} must be a list of strings, got {kind(value)}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise Invalid(f"{where}.{key}: {item!r} is not a non-empty string")
    return tuple(value)


def boolean(data: dict, key: str, where: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise Invalid(f"{where}.{key} must be true or false, got {kind(value)}")
    return value


def kind(value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kinds.update({list: "a list", dict: "a mapping", type(None): "nothing"})
    return kinds.get(type(value), type(value).__name__)
