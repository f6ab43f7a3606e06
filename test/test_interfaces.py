"""The interface packages built by interfaces/build.sh (make setup): dsg_jit_ros_msgs and tf2_msgs.

Serialization round trips through rclpy's CDR (de)serializer, and a check that the generated
SlamStatus class declares exactly the fields of msg/SlamStatus.msg (the single source of truth).
"""

import math
import re

import pytest
from builtin_interfaces.msg import Time
from conftest import REPO
from dsg_jit_ros_msgs.msg import SlamStatus
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

# .msg primitive names -> the names the generated classes report (rosidl's IDL names)
_IDL_NAMES = {"float32": "float", "float64": "double", "byte": "octet", "char": "uint8"}


def _idl_type(msg_type: str, package: str) -> str:
    """Field type as written in a .msg file -> get_fields_and_field_types() spelling."""
    m = re.fullmatch(r"([\w/]+)(<=(\d+))?(\[(<=)?(\d*)\])?", msg_type)
    assert m, f"unparsed type {msg_type!r}"
    base, _, str_bound, array, bounded, size = m.groups()
    if base in ("string", "wstring"):
        element = f"{base}<{str_bound}>" if str_bound else base
    elif base == "Header":  # the one unqualified type from another package
        element = "std_msgs/Header"
    elif "/" in base or not base[0].isupper():
        element = _IDL_NAMES.get(base, base)
    else:  # a type of the same package
        element = f"{package}/{base}"
    if not array:
        return element
    if bounded:
        return f"sequence<{element}, {size}>"
    return f"{element}[{size}]" if size else f"sequence<{element}>"


def _parse_msg(path, package):
    """(fields, constants) of a .msg file: [(name, idl type)], {name: literal text}."""
    fields, constants = [], {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()  # (a '#' inside a string constant is not handled)
        if not line:
            continue
        msg_type, rest = line.split(None, 1)
        if "=" in rest:  # constant: TYPE NAME=VALUE
            name, value = (s.strip() for s in rest.split("=", 1))
            constants[name] = value
            continue
        name = rest.split()[0]  # a default value may follow the name
        fields.append((name, _idl_type(msg_type, package)))
    return fields, constants


def test_slam_status_fields_match_msg_file():
    fields, constants = _parse_msg(REPO / "msg" / "SlamStatus.msg", "dsg_jit_ros_msgs")
    assert fields, "msg/SlamStatus.msg declares no field"
    assert list(SlamStatus.get_fields_and_field_types().items()) == fields
    for name in constants:
        assert hasattr(SlamStatus, name), f"constant {name} missing from the generated class"


def test_slam_status_round_trip():
    msg = SlamStatus(
        header=Header(stamp=Time(sec=1_700_000_123, nanosec=456_789_012), frame_id="map"),
        keyframes=42,
        latency_ms=12.625,
        solve_ms=7.5,
        iterations=6,
        initial_cost=1234.5678,
        final_cost=0.001953125,
        window_size=10,
        active_voxels=3000,
        frozen_voxels=123_456,
        factors=4321,
        compilations=2,
        compilations_after_warmup=0,
        dropped_reasons=["empty_cloud", "non_finite_pose", "ünïcödé"],
        dropped_counts=[3, 1, 4_294_967_295],
    )
    data = serialize_message(msg)
    assert isinstance(data, bytes) and len(data) > 0
    back = deserialize_message(data, SlamStatus)
    assert back == msg
    # field by field too, so a failure names the field
    assert back.header.stamp.sec == 1_700_000_123
    assert back.header.stamp.nanosec == 456_789_012
    assert back.header.frame_id == "map"
    for name in SlamStatus.get_fields_and_field_types():
        if name == "header":
            continue
        got, want = getattr(back, name), getattr(msg, name)
        if isinstance(want, (int, float)):
            assert got == want, name
        else:  # sequences (list of str, array('I') of uint32)
            assert list(got) == list(want), name
    # an empty message round-trips as well (zero-length sequences)
    assert deserialize_message(serialize_message(SlamStatus()), SlamStatus) == SlamStatus()


def test_slam_status_field_checks():
    # field checks are off by default in Kilted (ROS_PYTHON_CHECK_FIELDS); they show the types
    with pytest.raises(AssertionError):
        SlamStatus(keyframes=-1, check_fields=True)
    with pytest.raises((AssertionError, OverflowError)):  # array('I') itself refuses it
        SlamStatus(dropped_counts=[2**32], check_fields=True)
    with pytest.raises(AssertionError):
        SlamStatus(latency_ms="fast", check_fields=True)


def _transform(parent, child, sec, t, q):
    return TransformStamped(
        header=Header(stamp=Time(sec=sec, nanosec=5), frame_id=parent),
        child_frame_id=child,
        transform=Transform(translation=Vector3(x=t[0], y=t[1], z=t[2]),
                            rotation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3])),
    )


def test_tf_message_round_trip():
    s = math.sqrt(0.5)
    msg = TFMessage(transforms=[
        _transform("map", "odom", 10, (1.0, -2.0, 0.25), (0.0, 0.0, s, s)),
        _transform("odom", "base_link", 11, (0.5, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)),
    ])
    assert TFMessage.get_fields_and_field_types() == {
        "transforms": "sequence<geometry_msgs/TransformStamped>"}
    back = deserialize_message(serialize_message(msg), TFMessage)
    assert back == msg
    assert len(back.transforms) == 2
    for got, want in zip(back.transforms, msg.transforms):
        assert got.header.frame_id == want.header.frame_id
        assert got.header.stamp == want.header.stamp
        assert got.child_frame_id == want.child_frame_id
        for part in ("x", "y", "z"):
            assert getattr(got.transform.translation, part) == getattr(want.transform.translation, part)
        for part in ("x", "y", "z", "w"):
            assert getattr(got.transform.rotation, part) == getattr(want.transform.rotation, part)
