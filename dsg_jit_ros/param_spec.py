"""What one parameter declaration is, and how a table of them fills configuration dataclasses.

A ``ParamSpec`` names a parameter once: the dotted name is the ROS parameter, the
key in ``config/*.yaml`` and (its last part) the dataclass field it fills, so the
name a user writes and the name the code reads are the same.  ``assemble``
builds a tree of frozen configuration dataclasses from a table of specs and their
values: each value cast to its field's annotated type, each nested configuration
dataclass assembled the same way, every field no parameter fills left at its
default.  The table itself is ``dsg_jit_ros.config.PARAMS``.  No ROS here.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class ParameterError(ValueError):
    """A parameter value or name the node cannot run with (the message names it)."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default, description, range or choices, and the field it fills.

    ``fills`` is the configuration dataclass the value goes into; its field is the
    last part of ``name`` (``voxel.size`` fills ``VoxelConfig.size``) unless
    ``field`` says otherwise.  ``low``/``high`` bound numbers (ROS checks them at
    declaration too); ``choices`` lists the accepted strings.
    """

    name: str
    default: object
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    fills: type | None = None
    field: str = ""

    def __post_init__(self) -> None:
        if not self.field:
            object.__setattr__(self, "field", self.name.rpartition(".")[2])


def filling(config: type, *specs: ParamSpec) -> tuple[ParamSpec, ...]:
    """``specs`` marked as filling fields of the dataclass ``config`` (a block of the table)."""
    return tuple(dataclasses.replace(s, fills=config) for s in specs)


def unknown_name_error(name: str, known: Iterable[str], source: str = "") -> ParameterError:
    """The error for an undeclared parameter ``name``, naming the closest of ``known``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    where = f" ({source})" if source else ""
    return ParameterError(f"unknown parameter '{name}'{where}{hint}")


def check_value(spec: ParamSpec, value: object) -> None:
    """ParameterError when ``value`` is outside the spec's range or not one of its choices."""
    if spec.low is not None and not spec.low <= value <= spec.high:
        raise ParameterError(f"parameter '{spec.name}' = {value} is outside [{spec.low:g}, {spec.high:g}]")
    if spec.choices and value not in spec.choices:
        raise ParameterError(f"parameter '{spec.name}' must be one of {', '.join(spec.choices)}, got {value!r}")


def _cast(spec: ParamSpec, value: object, hint: object) -> object:
    """``value`` as the type the field is annotated with (int, float, bool, str, tuple of floats)."""
    kind = typing.get_origin(hint) or hint
    try:
        if kind is tuple:
            return tuple(float(x) for x in value)
        if kind in (int, float, bool, str):
            return kind(value)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"parameter '{spec.name}' = {value!r} is not a valid {getattr(kind, '__name__', kind)}") from err
    raise TypeError(f"{spec.fills.__name__}.{spec.field} has a type parameters cannot fill: {hint}")


def field_values(specs: Iterable[ParamSpec], values: Mapping[str, object]) -> dict[type, dict[str, object]]:
    """Configuration dataclass -> {field: value} of every spec, cast to the field's type
    and checked against the spec's range and choices (ParameterError naming it)."""
    out: dict[type, dict[str, object]] = {}
    for spec in specs:
        value = _cast(spec, values[spec.name], typing.get_type_hints(spec.fills)[spec.field])
        check_value(spec, value)
        out.setdefault(spec.fills, {})[spec.field] = value
    return out


def nested_configs(config: type) -> dict[str, type]:
    """Field name -> configuration dataclass of the fields of ``config`` that are dataclasses."""
    hints = typing.get_type_hints(config)
    return {f.name: hints[f.name] for f in dataclasses.fields(config) if dataclasses.is_dataclass(hints[f.name])}


def _reaches(config: type, given: Mapping[type, dict]) -> bool:
    return config in given or any(_reaches(sub, given) for sub in nested_configs(config).values())


def assemble(config: type, given: Mapping[type, dict[str, object]]):
    """An instance of ``config`` with the fields in ``given[config]``, its nested
    configuration dataclasses assembled from ``given`` too (those nothing reaches keep
    their defaults), other fields at their defaults.  A ValueError of a dataclass's
    own checks propagates."""
    kwargs = dict(given.get(config, {}))
    for name, sub in nested_configs(config).items():
        if _reaches(sub, given):
            kwargs[name] = assemble(sub, given)
    return config(**kwargs)
