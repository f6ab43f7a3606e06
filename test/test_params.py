"""config/params.yaml lists exactly the parameters the node declares, with the
same defaults; every range admits its default; bad combinations are refused."""

import pytest
import yaml

from conftest import REPO
from dsg_jit_ros.optimization.solvers import LMConfig
from dsg_jit_ros.param_files import flatten
from dsg_jit_ros.ros.params import PARAMS, ParameterError, build_configs


def test_params_yaml_matches_the_declared_parameters():
    doc = yaml.safe_load((REPO / "config" / "params.yaml").read_text())
    values = flatten(doc["/**"]["ros__parameters"])
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
RENAMED = {  # flattened field path then -> now (the field now has its parameter's name)
    "pipeline:window.window_size": "pipeline:window.size",
    "pipeline:window.voxel.voxel_size": "pipeline:window.voxel.size",
    "pipeline:loop.loop_sigma_translation": "pipeline:loop.sigma_translation",
    "pipeline:loop.loop_sigma_rotation": "pipeline:loop.sigma_rotation",
}  # NodeConfig.reliable_inputs is now a property of the new field input_reliability
ADDED_NODE_FIELDS = {"input_reliability", "sensor_extrinsic", "autostart"}  # each one parameter's value
# LMConfig options added since (no parameter fills them): the window's solver keeps LMConfig's defaults
ADDED_LM_FIELDS = {"damping", "stop_on_flat_rejection", "sparse_backend", "keep_linearization", "keep_factor"}
ADDED_PARAMS = {"loop.drift_rotation_per_metre", "loop.initial_capacity", "loop.horizon_travel", "loop.partial",
                "keyframe.track_between"}  # parameters declared after the dump (field path = name)
# noise.* parameters declared after the dump: they fill WindowConfig fields (field path -> name)
ADDED_NOISE = {"window.odom_scale_memory": "noise.odom_scale_memory", "window.odom_scale_limit": "noise.odom_scale_limit"}
# other parameters declared after the dump whose field path is not their name (field path -> name)
ADDED_FILLED = {**ADDED_NOISE, "window.prefix_fraction": "solver.prefix_fraction"}
ADDED_PIPELINE_FIELDS = {f"window.lm.{name}" for name in ADDED_LM_FIELDS} | ADDED_PARAMS | set(ADDED_FILLED)
# parameters whose default or shipped value changed since the dump (planar_laser.yaml: loop closure on)
CHANGED_VALUES = {"loop.kernel_scale", "loop.enabled", "loop.min_overlap", "loop.max_rmse", "loop.capacity",
                  "loop.drift_per_metre"}


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

    from dsg_jit_ros.param_files import read_param_file

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
        assert added == (ADDED_NODE_FIELDS if part == "node" else ADDED_PIPELINE_FIELDS), added
        for name in added:
            if part == "pipeline" and name in ADDED_FILLED:
                assert now[name] == values[ADDED_FILLED[name]], name
                continue
            if part == "pipeline" and name not in ADDED_PARAMS:
                assert now[name] == getattr(LMConfig(), name.rpartition(".")[2]), name
                continue
            assert now[name] == (list(values[name]) if isinstance(values[name], tuple) else values[name])
        if part == "pipeline":
            for name in CHANGED_VALUES:  # the field path is the parameter's name
                assert now[name] == values[name]
                expected.pop(name)
        for key, value in expected.items():  # by attribute: a field may have become a property
            got = cfg
            for attr in key.split("."):
                got = getattr(got, attr)
            got = list(got) if isinstance(got, tuple) else got
            assert got == value and type(got) is type(value), (part, key, got, value)


@pytest.mark.parametrize("name", ["params", "planar_laser", "lidar_3d"])
def test_shipped_parameter_files_are_rendered_from_the_table(name):
    """Descriptions, ranges, order and grouping of config/*.yaml come from PARAMS
    (`python -m dsg_jit_ros.param_files config/*.yaml` renders them again)."""
    from dsg_jit_ros.param_files import rerender

    path = REPO / "config" / f"{name}.yaml"
    assert rerender(path) == path.read_text()


def test_every_parameter_fills_one_dataclass_field_of_its_type():
    import dataclasses
    import typing

    from dsg_jit_ros.config import NodeConfig
    from dsg_jit_ros.mapping.pipeline import PipelineConfig
    from dsg_jit_ros.param_spec import nested_configs

    def tree(cls):
        yield cls
        for sub in nested_configs(cls).values():
            yield from tree(sub)

    classes = list(tree(NodeConfig)) + list(tree(PipelineConfig))
    assert len(classes) == len(set(classes))  # each dataclass at one place: one value per field
    filled = [(s.fills, s.field) for s in PARAMS]
    assert len(filled) == len(set(filled))
    for spec in PARAMS:
        assert spec.fills in classes, spec.name
        hint = typing.get_type_hints(spec.fills)[spec.field]
        kind = typing.get_origin(hint) or hint
        default = tuple(spec.default) if isinstance(spec.default, list) else spec.default
        assert type(default) is kind, (spec.name, hint)
        if spec.field != spec.name.rpartition(".")[2]:  # names differ only where LMConfig keeps its own
            assert spec.fills.__name__ == "LMConfig", spec.name
    # every NodeConfig field is some parameter's
    assert {f.name for f in dataclasses.fields(NodeConfig)} == {s.field for s in PARAMS if s.fills is NodeConfig}


@pytest.mark.parametrize("change, message", [
    ({"planar": "maybe"}, "parameter 'planar' must be one of auto, on, off"),
    ({"mode": "mappping"}, "parameter 'mode' must be one of mapping, localization"),
    ({"window.size": 1}, r"parameter 'window.size' = 1 is outside \[2, 1000\]"),
    ({"window.size": "three"}, "parameter 'window.size' = 'three' is not a valid int"),
])
def test_choices_ranges_and_types_come_from_the_table(change, message):
    values = {s.name: s.default for s in PARAMS}
    values.update(change)
    with pytest.raises(ParameterError, match=message):
        build_configs(values)


def test_an_unknown_name_in_a_file_or_override_names_the_closest_parameter(tmp_path):
    from dsg_jit_ros.config import load_pipeline_config

    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    window: {sise: 3}\n")
    with pytest.raises(ParameterError, match=r"unknown parameter 'window.sise' \(.*p.yaml\); did you mean 'window.size'\?"):
        load_pipeline_config(path)
    with pytest.raises(ParameterError, match="did you mean 'loop.max_rmse'"):
        load_pipeline_config(overrides=["loop.max_rsme=2.0"])
    assert load_pipeline_config(overrides=["window.size=3"]).window.size == 3


def test_the_config_dataclasses_default_to_the_table():
    """The ROS-free code and tests build the dataclasses with their own defaults: they are
    the table's (LMConfig is the solvers' general config: the window's own LMConfig is)."""
    import dataclasses

    from dsg_jit_ros.mapping.window_config import WindowConfig

    window_lm = WindowConfig().lm
    for spec in PARAMS:
        if spec.fills.__name__ == "NodeConfig":  # built from the table only: no defaults
            continue
        f = {f.name: f for f in dataclasses.fields(spec.fills)}[spec.field]
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if spec.fills is type(window_lm):
            default = getattr(window_lm, spec.field)
        assert default == (tuple(spec.default) if isinstance(spec.default, list) else spec.default), spec.name
