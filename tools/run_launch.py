"""Run a launch file without the `ros2 launch` CLI (ros2cli has no wheel).

    python tools/run_launch.py launch/demo.launch.py [name:=value ...] [--show-args]

Needs `launch` (and `launch_ros` for our launch files) importable, e.g. in the side venv of
tools/launch_venv.sh.  Does what `ros2 launch FILE name:=value` does for a file path: the
arguments become launch arguments of the file, Ctrl-C shuts the launch down, and the exit
status is LaunchService.run()'s, as with `ros2 launch`: non-zero when the launch itself
fails (bad argument, missing executable), not when a launched process exits non-zero.
"""

import argparse
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("launch_file")
    p.add_argument("arguments", nargs="*", metavar="name:=value")
    p.add_argument("--show-args", action="store_true", help="list the file's launch arguments and exit")
    p.add_argument("--debug", action="store_true", help="launch's debug logging")
    args = p.parse_args(argv)

    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    from launch import LaunchDescription, LaunchService

    pairs = []
    for a in args.arguments:
        name, sep, value = a.partition(":=")
        if not sep or not name:
            p.error(f"launch arguments are name:=value, got {a!r}")
        pairs.append((name, value))

    source = AnyLaunchDescriptionSource(args.launch_file)
    if args.show_args:
        from launch.launch_context import LaunchContext
        description = source.try_get_launch_description_without_context()
        for arg in description.get_launch_arguments():
            default = "" if arg.default_value is None else " (default: " + "".join(
                s.perform(LaunchContext()) for s in arg.default_value) + ")"
            print(f"  {arg.name}{default}\n      {arg.description}")
        return 0

    service = LaunchService(argv=[f"{n}:={v}" for n, v in pairs], debug=args.debug)
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(source, launch_arguments=pairs),
    ]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
