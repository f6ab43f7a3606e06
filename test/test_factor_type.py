"""FactorType records (world.factor_type): what the built-in residuals declare, what
any other function gets, and how specs built on them compare."""

import pytest

from dsg_jit_ros.slam.measurements import BUILTIN_RESIDUALS, pose_voxel_surface_residual, prior_residual
from dsg_jit_ros.world.factor_type import POINT_IN_MAP, PRIOR, FactorType, describe, factor_type_of
from dsg_jit_ros.world.graph import ResidualSpec


def test_builtin_records_and_plain_functions():
    surface = factor_type_of(pose_voxel_surface_residual)
    assert surface.schur_structure == POINT_IN_MAP and surface.tangent_jacobians and surface.lifted_residual
    assert factor_type_of(prior_residual).schur_structure == PRIOR and factor_type_of(prior_residual).takes_context
    assert factor_type_of(pose_voxel_surface_residual) is surface  # declared once, looked up
    closed_form = {name for name, fn in BUILTIN_RESIDUALS.items() if factor_type_of(fn).tangent_jacobians}
    assert closed_form == {"odom_se3", "between_se3", "pose_voxel_point", "pose_voxel_surface"}

    def mine(x, params):
        return x - params["target"]

    plain = factor_type_of(mine)
    assert plain == FactorType(mine) and plain.tangent_jacobians is None and plain.schur_structure is None
    assert not plain.takes_context and plain.name == "mine"


def test_records_are_checked_and_specs_compare_by_function():
    with pytest.raises(ValueError, match="schur_structure"):
        FactorType(prior_residual, schur_structure="points")
    with pytest.raises(ValueError, match="already described"):
        describe(prior_residual)
    spec = ResidualSpec("surface", pose_voxel_surface_residual)
    assert spec == ResidualSpec("surface", pose_voxel_surface_residual) and hash(spec) == hash(
        ResidualSpec("surface", pose_voxel_surface_residual))
    assert spec != ResidualSpec("other", pose_voxel_surface_residual)
    assert spec.schur_structure == POINT_IN_MAP and spec.kind is factor_type_of(pose_voxel_surface_residual)
