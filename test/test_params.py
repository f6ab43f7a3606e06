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
