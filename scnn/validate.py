"""Checks that config dataclasses run in ``__post_init__``: one clear line naming the field,
its value and what is allowed, raised as ValueError (the ``scnn`` command prints it as is)."""

from __future__ import annotations

from typing import Iterable


def check_choice(name: str, value, choices: Iterable) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_number(name: str, value, minimum=None, maximum=None, integer: bool = False, exclusive_minimum=False) -> None:
    """``value`` is a number (an integer if ``integer``; bools are not numbers) within the bounds."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}; got {value!r}")
    too_small = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    if too_small or (maximum is not None and value > maximum):
        low = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum}"
        high = "" if maximum is None else f"<= {maximum}"
        raise ValueError(f"{name} must be {' and '.join(part for part in (low, high) if part)}; got {value!r}")


def check_type(name: str, value, annotation):
    """``value`` checked against the type ``annotation`` of a dataclass field, converted where that loses
    nothing (an int for a float field, a list for a tuple field); ValueError naming ``name`` otherwise.

    Understands bool, int, float, str, dict, ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y, Z]`` and unions
    with None (None only where the field allows it); other annotations accept any value.
    """
    import types
    import typing
    from pathlib import Path

    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or \
        typing.get_origin(annotation) is typing.Union else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{name}: a value is required (got null)")
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is str and isinstance(value, (str, Path)):
            return str(value)
        if origin is dict and isinstance(value, dict):
            return dict(value)
        if origin in (list, tuple) and isinstance(value, (list, tuple)):
            return origin(_checked_items(name, value, typing.get_args(option), origin))
        if origin is typing.Any or not isinstance(origin, type):
            return value
    raise ValueError(f"{name}: expected {type_name(annotation)}, got {value!r}")


def _checked_items(name: str, value, arguments: tuple, origin) -> list:
    """The items of a list or tuple value checked against ``list[X]``, ``tuple[X, ...]`` or ``tuple[X, Y]``;
    one ValueError naming the field and what it holds otherwise."""
    if not arguments:
        return list(value)
    fixed = origin is tuple and not (len(arguments) == 2 and arguments[1] is Ellipsis)
    kinds = arguments if fixed else (arguments[0],) * len(value)
    try:
        if fixed and len(value) != len(arguments):
            raise ValueError
        return [check_type(name, item, kind) for item, kind in zip(value, kinds)]
    except ValueError:
        raise ValueError(f"{name} must be {_items_name(arguments, fixed)}; got {list(value)!r}") from None


def _items_name(arguments: tuple, fixed: bool) -> str:
    """"a list of numbers", "3 integers": what a list or tuple field holds, in words."""
    plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
    if fixed:
        kinds = set(arguments)
        what = plural.get(arguments[0], "values") if len(kinds) == 1 else "values"
        return f"{len(arguments)} {what}"
    return f"a list of {plural.get(arguments[0], 'values')}"


def type_name(annotation) -> str:
    """``int``, ``float``, ``a list of integers``: a field's type as an error message names it (None left out)."""
    import types
    import typing

    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or \
        typing.get_origin(annotation) is typing.Union else (annotation,)
    names = []
    for option in options:
        origin, arguments = typing.get_origin(option) or option, typing.get_args(option)
        if option is type(None):
            continue
        if origin in (list, tuple) and arguments:
            names.append(_items_name(arguments, origin is tuple and arguments[-1] is not Ellipsis))
        else:
            names.append({list: "a list", tuple: "a list"}.get(origin, getattr(origin, "__name__", str(origin))))
    return " or ".join(names)
