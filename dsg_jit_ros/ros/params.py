"""Declaring the node's parameters (``dsg_jit_ros.config.PARAMS``) on an rclpy node.

Every parameter is declared read-only with its description, range and choices (so
``ros2 param describe`` explains it) and read once at start-up; the values become
the configuration dataclasses via ``config.build_configs``.
"""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.node import Node

from dsg_jit_ros.config import PARAMS, NodeConfig, ParameterError, ParamSpec, build_configs  # noqa: F401 (re-exported)


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
