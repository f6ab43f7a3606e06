"""Declaring the node's parameters (``dsg_jit_ros.config.PARAMS``) on an rclpy node, and
refusing the names it does not declare.

Every parameter is declared read-only with its description, range and choices (so
``ros2 param describe`` explains it) and read once at start-up; the values become
the configuration dataclasses via ``config.build_configs``.  A name set for the
node by ``--params-file`` or ``-p`` that it never declares (a misspelt
``window.sise``) would otherwise be ignored without a word: ``check_overrides``
turns it into a ParameterError naming the closest declared parameter.
``arguments_error`` words rcl's refusal of the arguments themselves.
"""

from __future__ import annotations

import re

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node

from dsg_jit_ros.config import (  # noqa: F401 (re-exported)
    BUILT_IN, PARAMS, SPECS, NodeConfig, ParameterError, ParamSpec, build_configs)
from dsg_jit_ros.param_spec import unknown_name_error

OVERRIDE_SOURCE = "from the parameters file or -p"


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=spec.description, read_only=True)
    if spec.low is not None:
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    if spec.choices:
        desc.additional_constraints = f"one of: {', '.join(spec.choices)}"
    return desc


def declare_and_read(node: Node) -> dict[str, object]:
    """Declare every parameter on ``node`` and return name -> value."""
    values = {}
    for spec in PARAMS:
        try:
            param = node.declare_parameter(spec.name, spec.default, _descriptor(spec))
        except InvalidParameterValueException as err:
            raise ParameterError(f"parameter '{spec.name}': {err} (allowed: [{spec.low}, {spec.high}])") from err
        except Exception as err:  # wrong type from a params file or -p
            raise ParameterError(f"parameter '{spec.name}': {err}") from err
        values[spec.name] = param.value
    return values


def undeclared_overrides(node: Node) -> list[str] | None:
    """Names set for ``node`` that it has not declared (None: this rclpy does not say).

    rclpy keeps the parameter values meant for a node in ``Node._parameter_overrides``:
    the ``--params-file`` and ``-p`` arguments as rcl resolved them for this node's
    name and namespace (sections of other nodes excluded), plus the constructor's
    ``parameter_overrides``; ``declare_parameter`` takes its values from there.  There
    is no public accessor, so the attribute is read where it exists (rclpy Foxy to
    Kilted).  Declared names include rclpy's own (``use_sim_time``, ...)."""
    overrides = getattr(node, "_parameter_overrides", None)
    if not isinstance(overrides, dict):
        return None
    return sorted(name for name in overrides if not node.has_parameter(name))


def check_overrides(node: Node) -> None:
    """ParameterError naming the first undeclared parameter set for ``node`` (and how
    many more there are) with the closest declared name; a warning when rclpy
    cannot tell."""
    unknown = undeclared_overrides(node)
    if unknown is None:
        node.get_logger().warning("this rclpy does not expose the parameter overrides: misspelt parameter "
                                  "names cannot be detected")
        return
    if unknown:
        err = unknown_name_error(unknown[0], list(SPECS) + list(BUILT_IN), OVERRIDE_SOURCE)
        if len(unknown) > 1:
            err = ParameterError(f"{err} (unknown too: {', '.join(repr(n) for n in unknown[1:])})")
        raise err


def arguments_error(err: Exception) -> str:
    """rcl's refusal of the ``--ros-args`` (an unreadable ``--params-file``, a malformed
    ``-p``) as one sentence: without rcl's source locations."""
    text = re.sub(r",? at /\S+:\d+", "", " ".join(str(err).split()))
    return text.removeprefix("failed to initialize rcl: ")
