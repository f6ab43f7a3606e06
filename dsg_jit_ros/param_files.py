"""ROS 2 parameter files of the node: read them without ROS, and render them from ``config.PARAMS``.

The shipped files (``config/params.yaml`` with every parameter at its default,
the sensor-class files with what differs by sensor) are generated: each entry's
comment is its description and range from the table, in the table's order.
``python -m dsg_jit_ros.param_files [--check] FILE...`` renders the files again
from the table, keeping each file's header comment and values (``--check``: only
say which would change, exit code 1).  A test keeps the shipped files equal to
their rendering.  No ROS here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsg_jit_ros.config import PARAMS, ParameterError, check_names


def flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    """Nested parameter dict -> dotted names (``{"window": {"size": 3}}`` -> ``{"window.size": 3}``)."""
    out: dict[str, object] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_param_file(path: str | Path) -> dict[str, object]:
    """Dotted name -> value of a ROS 2 parameter file (``/**`` or node-name sections);
    ParameterError for an unreadable file or an undeclared name."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ParameterError(f"cannot read parameter file {path}: {err}") from err
    values: dict[str, object] = {}
    for section in (doc or {}).values():
        if isinstance(section, dict) and "ros__parameters" in section:
            values.update(flatten(section["ros__parameters"] or {}))
    check_names(values, str(path))
    return values


def parse_override(text: str) -> tuple[str, object]:
    """``"name=value"`` -> (name, value parsed as YAML, as ``-p name:=value`` is)."""
    import yaml

    name, sep, value = text.partition("=")
    if not sep:
        raise ParameterError(f"override {text!r} is not name=value")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return name.strip(), parsed


def render_param_file(values: dict[str, object] | None = None, header: str = "") -> str:
    """A ROS 2 parameter file (``/**: ros__parameters:``) of ``values`` (default: every
    declared parameter at its default), grouped by prefix, each with its description."""
    import yaml

    values = {s.name: s.default for s in PARAMS} if values is None else values
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] + ["/**:", "  ros__parameters:"]
    group = None
    for spec in PARAMS:
        if spec.name not in values:
            continue
        head, _, leaf = spec.name.rpartition(".")
        if head != group:
            if head:
                lines += ["", f"    {head}:"]
            group = head
        indent = "      " if head else "    "
        rng = f" Range [{spec.low:g}, {spec.high:g}]." if spec.low is not None else ""
        lines.append(f"{indent}# {spec.description}{rng}")
        text = yaml.safe_dump({leaf: values[spec.name]}, default_flow_style=True, width=1000).strip()[1:-1]
        lines.append(f"{indent}{text}")
    return "\n".join(lines) + "\n"


def rerender(path: str | Path) -> str:
    """The file at ``path`` rendered again from the table: its header comment (the
    comment lines before ``/**:``) and its values kept."""
    path = Path(path)
    text = path.read_text()
    header = [line for line in text.split("/**:", 1)[0].splitlines() if line.startswith("#")]
    return render_param_file(read_param_file(path),
                             "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in header))


def main(argv: list[str] | None = None) -> int:
    """Entry point: render the given parameter files again (or check them)."""
    p = argparse.ArgumentParser(prog="python -m dsg_jit_ros.param_files", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file differs from its rendering")
    args = p.parse_args(argv)
    stale = []
    for path in args.files:
        try:
            text = rerender(path)
        except ParameterError as err:
            print(f"{path}: {err}", file=sys.stderr)
            return 2
        if text != path.read_text():
            stale.append(path)
            if not args.check:
                path.write_text(text)
    for path in stale:
        print(f"{path}: {'differs from' if args.check else 'rendered again from'} the parameter table")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
