"""Search spaces declared in a config's ``[tune.<section>]`` tables, checked precisely.

Each key of a tuned section names a field of that config section and maps to a table:

- ``{low = A, high = B}`` with optional ``log = true`` and ``step = S``: a range. An int
  field gets integers (``low``/``high``/``step`` must then be integers), a float field
  floats. ``log`` needs ``low > 0`` and no ``step``.
- ``{choices = [X, Y, ...]}``: one of the listed values (any field type; each value must
  fit the field).

For example::

    [tune.stage1]
    lr = {low = 1e-4, high = 1e-2, log = true}
    [tune.teacher]
    n_layers = {low = 1, high = 3}
    item_knn_k = {choices = [0, 10, 20]}

The ``data``, ``eval`` and ``run`` sections cannot be tuned: they fix the data, the
selection protocol and the outputs every trial is compared on.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from training.config import Config, from_dict, to_nested

FIXED_SECTIONS = ("data", "eval", "run")
RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Param:
    """One tuned field: ``section.key`` and its range or choices."""

    section: str
    key: str
    kind: typing.Literal["int", "float", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def parse_spaces(raw: Any, base: Config) -> list[Param]:
    """The parameters of a ``[tune]`` table, each checked against ``base``'s fields.

    Raises ValueError naming the key and what was expected.
    """
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(
            "[tune] must hold at least one [tune.<section>] table of search spaces, "
            f"e.g. [tune.stage1] lr = {{low = 1e-4, high = 1e-2, log = true}}; got {raw!r}"
        )
    nested = to_nested(base)
    params = []
    for section, keys in raw.items():
        if section in FIXED_SECTIONS:
            raise ValueError(
                f"[tune.{section}]: the {', '.join(FIXED_SECTIONS)} sections cannot be tuned "
                "(they fix the data, the selection protocol and the outputs)"
            )
        if section not in nested:
            tunable = sorted(set(nested) - set(FIXED_SECTIONS))
            raise ValueError(f"[tune.{section}]: unknown section; tunable sections: {tunable}")
        if not isinstance(keys, Mapping) or not keys:
            raise ValueError(f"[tune.{section}] must be a table of key = {{...}} search spaces")
        for key, spec in keys.items():
            if key not in nested[section]:
                raise ValueError(
                    f"tune.{section}.{key}: unknown key; known keys of [{section}]: "
                    f"{sorted(nested[section])}"
                )
            param = _param(section, key, spec, typing.get_type_hints(type(getattr(base, section))))
            for value in _extremes(param):
                _check_value(base, param, value)
            params.append(param)
    return params


def _param(section: str, key: str, spec: Any, hints: Mapping[str, Any]) -> Param:
    name = f"tune.{section}.{key}"
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"{name}: expected a table {{low = .., high = ..}} or {{choices = [..]}}, got {spec!r}"
        )
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise ValueError(
                f"{name}: {{choices = [..]}} takes a non-empty list and no other keys, "
                f"got {dict(spec)!r}"
            )
        return Param(section, key, "choice", choices=tuple(choices))
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown or not {"low", "high"} <= set(spec):
        raise ValueError(
            f"{name}: a range needs low and high (optional log, step), got keys "
            f"{sorted(spec)}; or use {{choices = [..]}}"
        )
    field_type = hints[key]
    if field_type not in (int, float):
        raise ValueError(
            f"{name}: a range needs an int or float field, {section}.{key} is "
            f"{getattr(field_type, '__name__', field_type)}; use {{choices = [..]}}"
        )
    kind: typing.Literal["int", "float"] = "int" if field_type is int else "float"
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    numbers = [low, high] + ([step] if step is not None else [])
    wanted = (int,) if kind == "int" else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, wanted) for v in numbers):
        raise ValueError(f"{name}: low, high and step must be {kind}s, got {dict(spec)!r}")
    if not isinstance(log, bool):
        raise ValueError(f"{name}: log must be true or false, got {log!r}")
    if not low < high:
        raise ValueError(f"{name}: needs low < high, got low = {low}, high = {high}")
    if log and (low <= 0 or step is not None):
        raise ValueError(f"{name}: log = true needs low > 0 and no step, got {dict(spec)!r}")
    if step is not None and step <= 0:
        raise ValueError(f"{name}: step must be > 0, got {step}")
    return Param(section, key, kind, low=low, high=high, log=log, step=step)


def _extremes(param: Param) -> tuple[Any, ...]:
    if param.kind == "choice":
        return param.choices
    return (param.low, param.high)


def _check_value(base: Config, param: Param, value: Any) -> None:
    try:
        with_values(base, {param.name: value})
    except ValueError as exc:
        raise ValueError(f"tune.{param.name}: {value!r} does not fit the field ({exc})") from exc


def with_values(base: Config, values: Mapping[str, Any]) -> Config:
    """``base`` with ``{"section.key": value}`` set, type-checked as a config file is."""
    nested = to_nested(base)
    for name, value in values.items():
        section, key = name.split(".", 1)
        nested[section][key] = value
    return from_dict(nested)
