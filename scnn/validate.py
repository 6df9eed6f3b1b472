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
