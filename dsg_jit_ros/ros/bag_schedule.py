"""The ROS-free part of the bag player: configuration, remap parsing, topic
selection, message-type names and the playback schedule.

Times: bag timestamps are integer nanoseconds (ROS time); wall-clock offsets
are float seconds since the first played message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CLOCK_TOPIC",
    "PlayerConfig",
    "apply_remap",
    "format_summary",
    "message_type_path",
    "parse_remap",
    "playback_start_ns",
    "remap_table",
    "select_topics",
    "wall_offsets",
]

CLOCK_TOPIC = "/clock"

# a ROS 2 topic name (absolute or relative; no substitutions): tokens of
# alphanumerics and underscores that do not start with a digit, separated by "/"
_TOPIC_RE = re.compile(r"^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
_MSGTYPE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)/(msg|srv|action)/([A-Za-z][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class PlayerConfig:
    """How to replay a bag.

    Attributes:
        rate: bag seconds per wall second (> 0), or 0 for as fast as possible.
        clock: publish ``/clock`` (rosgraph_msgs/Clock) with the bag time before
            each message whose time is later than the last clock published.
        remaps: ``(from, to)`` topic pairs applied to the published names (also to ``/clock``).
        start_offset_s: skip the first seconds of the bag [s], >= 0.
        topics: bag topics to play (before remapping); empty plays them all.
        qos_depth: KEEP_LAST depth of the RELIABLE, VOLATILE publishers (> 0);
            bounds how many unacknowledged messages a slow subscriber can have in flight.
        wait_subscribers: before playing, wait until each topic of ``wait_topics``
            has at least this many matched subscriptions (0: do not wait).
        wait_topics: published (remapped) names to wait on; empty means every played
            topic except ``/clock``.
        wait_timeout_s: give up waiting for subscribers after this long [s].
        ack_timeout_s: at the end, wait this long [s] for every subscriber to
            acknowledge every message.
    """

    rate: float = 1.0
    clock: bool = False
    remaps: tuple[tuple[str, str], ...] = ()
    start_offset_s: float = 0.0
    topics: tuple[str, ...] = ()
    qos_depth: int = 1000
    wait_subscribers: int = 0
    wait_topics: tuple[str, ...] = ()
    wait_timeout_s: float = 30.0
    ack_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be > 0 (or 0 for as fast as possible), got {self.rate}")
        if not (math.isfinite(self.start_offset_s) and self.start_offset_s >= 0):
            raise ValueError(f"start offset must be >= 0 s, got {self.start_offset_s}")
        if self.qos_depth <= 0:
            raise ValueError(f"QoS depth must be > 0, got {self.qos_depth}")
        if self.wait_subscribers < 0:
            raise ValueError(f"wait_subscribers must be >= 0, got {self.wait_subscribers}")
        if self.wait_timeout_s < 0 or self.ack_timeout_s < 0:
            raise ValueError("timeouts must be >= 0 s")
        remap_table(self.remaps)  # validates


def _check_topic(name: str, what: str) -> str:
    """Absolute form of a topic name; ValueError if it is not a valid ROS 2 name."""
    if not _TOPIC_RE.match(name):
        raise ValueError(f"invalid {what} topic name {name!r}")
    return name if name.startswith("/") else "/" + name


def parse_remap(text: str) -> tuple[str, str]:
    """``"/from:=/to"`` -> ``("/from", "/to")``; relative names get a leading ``/``.

    Raises:
        ValueError: without exactly one ``:=``, or with an invalid name on either side.
    """
    if text.count(":=") != 1:
        raise ValueError(f"remap {text!r} must look like /from:=/to")
    src, dst = text.split(":=")
    return _check_topic(src, "remap source"), _check_topic(dst, "remap target")


def remap_table(remaps: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Mapping from source to target names; ValueError on a source remapped twice."""
    table: dict[str, str] = {}
    for src, dst in remaps:
        src, dst = _check_topic(src, "remap source"), _check_topic(dst, "remap target")
        if src in table and table[src] != dst:
            raise ValueError(f"topic {src} remapped twice ({table[src]} and {dst})")
        table[src] = dst
    return table


def apply_remap(topic: str, table: Mapping[str, str]) -> str:
    """Published name of ``topic`` (one remap step, as ROS does)."""
    return table.get(topic, topic)


def select_topics(available: Mapping[str, str], requested: Sequence[str]) -> list[str]:
    """Bag topics to play, in ``available`` order.

    Args:
        available: bag topic -> message type.
        requested: topics asked for (absolute or relative); empty selects all.

    Raises:
        ValueError: naming requested topics the bag does not have, and the ones it has.
    """
    if not requested:
        return list(available)
    wanted = {_check_topic(t, "requested") for t in requested}
    unknown = sorted(wanted - set(available))
    if unknown:
        raise ValueError(f"topic(s) {', '.join(unknown)} not in the bag; it has: {', '.join(sorted(available)) or 'none'}")
    return [t for t in available if t in wanted]


def message_type_path(msgtype: str) -> tuple[str, str]:
    """``"nav_msgs/msg/Odometry"`` -> ``("nav_msgs.msg", "Odometry")``; ValueError if malformed."""
    m = _MSGTYPE_RE.match(msgtype)
    if not m:
        raise ValueError(f"malformed message type {msgtype!r} (expected package/msg/Name)")
    return f"{m.group(1)}.{m.group(2)}", m.group(3)


def playback_start_ns(bag_start_ns: int, start_offset_s: float) -> int:
    """Bag time [ns] of the first message to play."""
    return int(bag_start_ns) + round(start_offset_s * 1e9)


def wall_offsets(stamps_ns: np.ndarray | Sequence[int], start_ns: int, rate: float) -> np.ndarray:
    """Wall-clock offsets [s] at which to publish messages stamped ``stamps_ns``.

    ``(t - start) / rate`` for ``rate > 0``, all zeros for ``rate == 0`` (as fast as
    possible).  Differences are taken in integer nanoseconds, so 1e18 ns stamps
    lose no precision.
    """
    delta = np.asarray(stamps_ns, dtype=np.int64) - np.int64(start_ns)
    if rate == 0:
        return np.zeros(delta.shape)
    return delta.astype(np.float64) * 1e-9 / rate


def format_summary(counts: Mapping[str, int], wall_s: float, bag_span_s: float, rate: float) -> str:
    """One line: messages per topic, bag span [s], wall time [s] and achieved rate."""
    total = sum(counts.values())
    per_topic = ", ".join(f"{t} {n}" for t, n in counts.items())
    achieved = bag_span_s / wall_s if wall_s > 0 else float("inf")
    wanted = "max" if rate == 0 else f"{rate:g}x"
    return (f"played {total} messages ({per_topic}) spanning {bag_span_s:.3f} s of bag time "
            f"in {wall_s:.3f} s wall: rate {achieved:.2f}x (requested {wanted})")
