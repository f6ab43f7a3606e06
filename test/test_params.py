"""config/params.yaml lists exactly the parameters the node declares, with the
same defaults; every range admits its default; bad combinations are refused."""

import pytest
import yaml

from conftest import REPO
from dsg_jit_ros.ros.params import PARAMS, ParameterError, build_configs


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_params_yaml_matches_the_declared_parameters():
    doc = yaml.safe_load((REPO / "config" / "params.yaml").read_text())
    values = _flatten(doc["/**"]["ros__parameters"])
    assert set(values) == {s.name for s in PARAMS}
    for spec in PARAMS:
        assert values[spec.name] == spec.default, spec.name
        assert spec.description.endswith(".") or spec.description.endswith(")")
        if spec.low is not None:
            assert spec.low <= spec.default <= spec.high, spec.name
    build_configs(values)  # the shipped file is valid


@pytest.mark.parametrize("change, message", [
    ({"map_frame": ""}, "map_frame"),
    ({"odom_frame": "map"}, "three different frames"),
    ({"input_reliability": "sometimes"}, "input_reliability"),
    ({"solver.linear_solver": "qr"}, "solver.linear_solver"),
    ({"voxel.min_range": 40.0}, "min_range"),
    ({"sensor_frame": "laser", "sensor_extrinsic": [0.0, 1.0]}, "sensor_extrinsic"),
])
def test_bad_combinations_are_refused_with_the_parameter_named(change, message):
    values = {s.name: s.default for s in PARAMS}
    values.update(change)
    with pytest.raises(ParameterError, match=message):
        build_configs(values)


def test_sensor_extrinsic_becomes_t_body_sensor():
    import numpy as np
    from transforms3d.euler import euler2mat

    values = {s.name: s.default for s in PARAMS}
    values.update({"sensor_frame": "laser", "sensor_extrinsic": [0.1, -0.2, 0.5, 0.01, -0.02, 1.0]})
    node_cfg, pipe_cfg = build_configs(values)
    assert node_cfg.cloud_frame == "laser"
    t = pipe_cfg.body_sensor()
    np.testing.assert_allclose(t[:3, 3], [0.1, -0.2, 0.5])
    np.testing.assert_allclose(t[:3, :3], euler2mat(0.01, -0.02, 1.0, "sxyz"), atol=1e-12)


# Configurations built by the hand-written build_configs before the parameters were
# single-sourced (dumped from that code): the generated one must give the same values.
BEFORE = REPO / "test" / "data" / "configs_before_single_source.json"
RENAMED: dict[str, str] = {}  # flattened field path then -> now
ADDED_NODE_FIELDS: set[str] = set()  # NodeConfig fields that are new (each one parameter's value)


def _flat_config(obj, prefix=""):
    import dataclasses

    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out.update(_flat_config(v, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = list(v) if isinstance(v, tuple) else v
    return out


@pytest.mark.parametrize("case", ["params", "planar_laser", "lidar_3d", "params+overrides"])
def test_configs_equal_those_of_the_hand_written_mapping(case):
    import json

    from dsg_jit_ros.config import read_param_file

    before = json.loads(BEFORE.read_text())[case]
    values = {s.name: s.default for s in PARAMS}
    if case in ("params", "planar_laser", "lidar_3d"):
        values.update(read_param_file(REPO / "config" / f"{case}.yaml"))
    else:
        values.update(before["overrides"])
    node_cfg, pipeline_cfg = build_configs(values)
    for part, cfg in (("node", node_cfg), ("pipeline", pipeline_cfg)):
        now = _flat_config(cfg)
        expected = {RENAMED.get(f"{part}:{k}", f"{part}:{k}").split(":", 1)[1]: v for k, v in before[part].items()}
        added = set(now) - {k for k in expected if k in now}
        assert added == (ADDED_NODE_FIELDS if part == "node" else set()), added
        for key, value in expected.items():  # by attribute: a field may have become a property
            got = cfg
            for attr in key.split("."):
                got = getattr(got, attr)
            got = list(got) if isinstance(got, tuple) else got
            assert got == value and type(got) is type(value), (part, key, got, value)
