"""Replay a ROS 2 bag (sqlite3 or MCAP) with rclpy, without rosbag2.

Console entry point::

    bag_player BAG [--rate R] [--clock] [--remap /from:=/to ...] [--start-offset S]
               [--topics T ...] [--qos-depth N] [--wait-subscribers N [--wait-topics T ...]]
               [--wait-timeout SEC] [--ack-timeout SEC] [--ros-args ...]

The raw CDR bytes of each message are published as they are
(``Publisher.publish(bytes)``) on a publisher of the message class named by the
bag (``nav_msgs/msg/Odometry`` -> ``nav_msgs.msg.Odometry``): no deserialisation.
(DDS pads a serialised payload with zeros to a multiple of 4 bytes: where a bag
stores unpadded CDR, subscribers get up to 3 trailing zero bytes more; rosbag2
and ``make_demo_bag`` store the padded form.)
Publishers are RELIABLE, VOLATILE, KEEP_LAST(``--qos-depth``), so a reliable
subscriber that keeps up receives every message.  (The final wait for
acknowledgements lasts up to Fast DDS's writer heartbeat period, 3 s by default;
a profile with a shorter ``heartbeat_period`` selected with
``FASTDDS_DEFAULT_PROFILES_FILE`` shortens it.)  Messages go out when the wall
clock reaches ``(t_bag - t_first) / rate`` after the start; with ``--clock`` the
bag time is published on ``/clock`` first.  Before exiting, every publisher waits
for all its messages to be acknowledged.

Exit status: 0 when everything was played and acknowledged; 1 when waiting for
subscribers or acknowledgements timed out; 2 on bad input (missing bag, unknown
topic, bad remap, message type not importable).

Python API: ``BagPlayer(node, bag_path, PlayerConfig(...)).play()``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dsg_jit_ros.ros.bag_schedule import (
    CLOCK_TOPIC,
    PlayerConfig,
    apply_remap,
    format_summary,
    message_type_path,
    parse_remap,
    playback_start_ns,
    remap_table,
    select_topics,
    wall_offsets,
)

__all__ = ["BagPlayer", "PlaybackSummary", "PlayerError", "PlayerTimeout", "main", "resolve_message_class", "split_ros_args"]

_POLL_S = 0.02  # [s] period of the subscriber-count poll while waiting for matches


class PlayerError(RuntimeError):
    """Bad input for a replay (bag, topics, types); ``main`` exits 2 on it."""


class PlayerTimeout(RuntimeError):
    """The subscribers asked for did not match in time; ``main`` exits 1 on it."""


@dataclass(frozen=True)
class PlaybackSummary:
    """Outcome of ``BagPlayer.play``.

    Attributes:
        counts: messages published per published (remapped) topic, ``/clock`` excluded.
        clock_messages: number of ``/clock`` messages published.
        bag_span_s: bag time from the first to the last played message [s].
        wall_s: wall time from the first to the last publish [s].
        acked: whether every subscriber acknowledged every message in time.
        stopped: whether ``stop()`` ended the replay early.
    """

    counts: dict[str, int]
    clock_messages: int
    bag_span_s: float
    wall_s: float
    acked: bool
    stopped: bool
    rate: float

    def describe(self) -> str:
        """One-line summary for logs."""
        line = format_summary(self.counts, self.wall_s, self.bag_span_s, self.rate)
        if self.clock_messages:
            line += f"; {self.clock_messages} /clock"
        line += "; all acknowledged" if self.acked else "; NOT all acknowledged"
        return line + ("; stopped early" if self.stopped else "")


def resolve_message_class(msgtype: str) -> type:
    """The Python message class of a bag type name, e.g. ``sensor_msgs/msg/PointCloud2``.

    Raises:
        PlayerError: malformed name, or the package / class cannot be imported.
    """
    try:
        module_name, class_name = message_type_path(msgtype)
    except ValueError as exc:
        raise PlayerError(str(exc)) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PlayerError(f"message type {msgtype} is not importable ({exc}); install its Python package "
                          f"(e.g. ros-{module_name.split('.')[0].replace('_', '-')}) or leave the topic out with --topics") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise PlayerError(f"message type {msgtype}: module {module_name} has no {class_name}")
    return cls


class BagPlayer:
    """Replays one bag through publishers of ``node``.

    The constructor opens the bag, checks the topic selection and the message
    types and creates the publishers (raising ``PlayerError`` on bad input);
    ``play()`` does the replay and can be called once.  ``stop()`` (from another
    thread) ends a replay early.  ``close()`` destroys the publishers and closes
    the bag; the player is also a context manager.
    """

    def __init__(self, node, bag_path: str | os.PathLike[str], config: PlayerConfig | None = None):
        from rclpy.qos import (
            DurabilityPolicy,
            HistoryPolicy,
            QoSProfile,
            ReliabilityPolicy,
        )
        from rosbags.rosbag2 import Reader, ReaderError

        config = PlayerConfig() if config is None else config
        self._node = node
        self._config = config
        self._stop = threading.Event()
        path = Path(bag_path)
        if not path.exists():
            raise PlayerError(f"bag not found: {path}")
        try:
            self._reader = Reader(path)
            self._reader.open()
        except (ReaderError, OSError) as exc:
            raise PlayerError(f"cannot open bag {path}: {exc}") from None
        self._publishers: dict[str, object] = {}
        try:
            available: dict[str, str] = {}
            for conn in self._reader.connections:
                if available.setdefault(conn.topic, conn.msgtype) != conn.msgtype:
                    raise PlayerError(f"topic {conn.topic} has two types in the bag ({available[conn.topic]}, {conn.msgtype})")
            try:
                topics = select_topics(available, config.topics)
                remaps = remap_table(config.remaps)
            except ValueError as exc:
                raise PlayerError(str(exc)) from None
            classes = {t: resolve_message_class(available[t]) for t in topics}
            self._connections = [c for c in self._reader.connections if c.topic in classes]
            self._out_name = {t: apply_remap(t, remaps) for t in topics}
            if len(set(self._out_name.values())) != len(topics):
                raise PlayerError(f"remapping makes two played topics share a name: {self._out_name}")
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=config.qos_depth,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
            for t in topics:
                self._publishers[t] = node.create_publisher(classes[t], self._out_name[t], qos)
            self._clock_pub = None
            self._clock_name = apply_remap(CLOCK_TOPIC, remaps)
            if config.clock:
                from rosgraph_msgs.msg import Clock

                if self._clock_name in self._out_name.values():
                    raise PlayerError(f"--clock: a played topic is already published as {self._clock_name}")
                self._clock_pub = node.create_publisher(Clock, self._clock_name, qos)
            wait_names = config.wait_topics or tuple(self._out_name.values())
            by_name = {name: self._publishers[t] for t, name in self._out_name.items()}
            if self._clock_pub is not None:
                by_name[self._clock_name] = self._clock_pub
            unknown = [n for n in wait_names if n not in by_name]
            if unknown:
                raise PlayerError(f"wait topic(s) {', '.join(unknown)} are not published; published: {', '.join(sorted(by_name))}")
            self._wait_for = {n: by_name[n] for n in wait_names}
        except BaseException:
            self.close()
            raise

    @property
    def published_topics(self) -> dict[str, str]:
        """Bag topic -> published (remapped) name."""
        return dict(self._out_name)

    def stop(self) -> None:
        """Ask a running ``play()`` to return after the current message."""
        self._stop.set()

    def wait_for_subscribers(self) -> None:
        """Wait until each wait topic has ``wait_subscribers`` matched subscriptions.

        Polls the publishers' matched counts (``get_subscription_count``) until met.

        Raises:
            PlayerTimeout: after ``wait_timeout_s`` or on ``stop()``, naming the counts.
        """
        need = self._config.wait_subscribers
        deadline = time.monotonic() + self._config.wait_timeout_s
        while True:
            missing = {n: p.get_subscription_count() for n, p in self._wait_for.items() if p.get_subscription_count() < need}
            if not missing:
                return
            if time.monotonic() >= deadline or self._stop.is_set():
                counts = ", ".join(f"{n} {c}" for n, c in missing.items())
                raise PlayerTimeout(f"gave up after {self._config.wait_timeout_s:g} s waiting for {need} matched "
                                    f"subscriber(s) per topic; have: {counts}")
            self._stop.wait(_POLL_S)

    def play(self) -> PlaybackSummary:
        """Wait for subscribers (if asked), replay, then wait for acknowledgements.

        Raises:
            PlayerTimeout: the subscribers asked for did not match in time.
        """
        from builtin_interfaces.msg import Time
        from rclpy.duration import Duration
        from rosgraph_msgs.msg import Clock

        cfg = self._config
        counts = {self._out_name[t]: 0 for t in self._publishers}
        if cfg.wait_subscribers > 0:
            self.wait_for_subscribers()
        start_ns = playback_start_ns(self._reader.start_time, cfg.start_offset_s)
        first_ns = last_ns = None
        clock_ns = -1
        n_clock = 0
        wall_start = wall_last = time.monotonic()
        for conn, t_ns, raw in self._reader.messages(connections=self._connections, start=start_ns):
            if self._stop.is_set():
                break
            if first_ns is None:
                first_ns = t_ns
                wall_start = time.monotonic()
            delay = wall_start + float(wall_offsets([t_ns], first_ns, cfg.rate)[0]) - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            if self._clock_pub is not None and t_ns > clock_ns:
                clock_ns = t_ns
                self._clock_pub.publish(Clock(clock=Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)))
                n_clock += 1
            self._publishers[conn.topic].publish(raw)
            counts[self._out_name[conn.topic]] += 1
            last_ns = t_ns
            wall_last = time.monotonic()
        pubs = list(self._publishers.values()) + ([self._clock_pub] if self._clock_pub is not None else [])
        ack_deadline = time.monotonic() + cfg.ack_timeout_s
        acked = True
        for pub in pubs:
            remaining = max(0.0, ack_deadline - time.monotonic())
            if not pub.wait_for_all_acked(Duration(nanoseconds=int(remaining * 1e9))):
                acked = False
                self._node.get_logger().error(f"{pub.topic_name}: not all messages acknowledged within {cfg.ack_timeout_s:g} s")
        span = 0.0 if first_ns is None else (last_ns - first_ns) * 1e-9
        return PlaybackSummary(counts, n_clock, span, wall_last - wall_start, acked=acked, stopped=self._stop.is_set(), rate=cfg.rate)

    def close(self) -> None:
        """Destroy the publishers and close the bag (idempotent)."""
        for pub in list(self._publishers.values()) + [getattr(self, "_clock_pub", None)]:
            if pub is not None:
                self._node.destroy_publisher(pub)
        self._publishers = {}
        self._clock_pub = None
        if getattr(self, "_reader", None) is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> BagPlayer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bag_player", description="Replay a ROS 2 bag (sqlite3 or MCAP) as raw CDR with rclpy.",
                                epilog="ROS arguments after --ros-args are passed to rclpy (e.g. --ros-args --log-level debug).")
    p.add_argument("bag", help="bag directory (with metadata.yaml)")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate, bag seconds per wall second; 0 = as fast as possible (default: 1)")
    p.add_argument("--clock", action="store_true", help="publish the bag time on /clock (rosgraph_msgs/Clock)")
    p.add_argument("--remap", nargs="+", action="extend", default=[], metavar="/FROM:=/TO", help="rename published topics")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S", help="skip the first S seconds of the bag")
    p.add_argument("--topics", nargs="+", default=[], metavar="T", help="play only these bag topics (default: all)")
    p.add_argument("--qos-depth", type=int, default=1000, help="KEEP_LAST depth of the reliable publishers (default: 1000)")
    p.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                   help="before playing, wait until each wait topic has N matched subscribers (default: 0, no wait)")
    p.add_argument("--wait-topics", nargs="+", default=[], metavar="T",
                   help="published names to wait on (default: every played topic except /clock)")
    p.add_argument("--wait-timeout", type=float, default=30.0, metavar="SEC", help="give up waiting for subscribers after SEC (default: 30)")
    p.add_argument("--ack-timeout", type=float, default=30.0, metavar="SEC",
                   help="wait up to SEC at the end for all messages to be acknowledged (default: 30)")
    return p


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into (own arguments, ROS arguments).

    ROS arguments are the ``--ros-args ... [--]`` blocks.  Everything else stays
    ours, including ``/from:=/to`` (which ``rclpy.utilities.remove_ros_args``
    would take for a deprecated ROS remap rule).
    """
    own: list[str] = []
    ros: list[str] = []
    inside = False
    for arg in argv:
        if arg == "--ros-args":
            inside = True
            ros.append(arg)
        elif inside and arg == "--":
            inside = False
        elif inside:
            ros.append(arg)
        else:
            own.append(arg)
    return own, ros


def main(argv: Sequence[str] | None = None) -> int:
    """``bag_player``: see the module docstring for the exit status."""
    own, ros_args = split_ros_args(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(own)

    def fail(message: str) -> int:
        print(f"bag_player: error: {message}", file=sys.stderr)
        return 2

    try:
        config = PlayerConfig(
            rate=args.rate, clock=args.clock, remaps=tuple(parse_remap(r) for r in args.remap),
            start_offset_s=args.start_offset, topics=tuple(args.topics), qos_depth=args.qos_depth,
            wait_subscribers=args.wait_subscribers, wait_topics=tuple(args.wait_topics),
            wait_timeout_s=args.wait_timeout, ack_timeout_s=args.ack_timeout)
    except ValueError as exc:
        return fail(str(exc))
    if not Path(args.bag).exists():
        return fail(f"bag not found: {args.bag}")

    import rclpy

    context = rclpy.Context()
    rclpy.init(args=["bag_player", *ros_args], context=context)
    node = rclpy.create_node("bag_player", context=context)
    try:
        with BagPlayer(node, args.bag, config) as player:
            summary = player.play()
        print(f"bag_player: {summary.describe()}", flush=True)
        return 0 if summary.acked else 1
    except PlayerError as exc:
        return fail(str(exc))
    except PlayerTimeout as exc:
        print(f"bag_player: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)


if __name__ == "__main__":
    sys.exit(main())
