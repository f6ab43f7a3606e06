"""The office world (make_demo_bag --world office) as the oracle of the planar-laser
pipeline: 90 s of it (through the visit of office R2, so relations span a revisit)
replayed with the shipped config/planar_laser.yaml, scored with the relations metric
of Kuemmerle et al. 2009 against ground truth: the local relations error must be well
under raw odometry's, on translation and rotation."""

import numpy as np

from conftest import REPO
from dsg_jit_ros.config import load_pipeline_config
from dsg_jit_ros.mapping.export import poses_at
from dsg_jit_ros.mapping.pipeline import SlamPipeline
from dsg_jit_ros.tools.log_reader import read_laser_log
from dsg_jit_ros.tools.make_demo_bag import OfficeConfig, generate_office_bag
from dsg_jit_ros.tools.relations import evaluate_relations


def test_office_slice_local_relations_well_under_odometry(tmp_path):
    bag = tmp_path / "office"
    generate_office_bag(bag, OfficeConfig(seed=1, duration_s=90.0))
    log = read_laser_log(bag)
    pipe = SlamPipeline(load_pipeline_config(REPO / "config" / "planar_laser.yaml"))
    pipe.warm_up()
    log.replay(pipe)
    assert pipe.planar and pipe.compilations_after_warmup() == 0
    odom = log.odometry_at_clouds()
    est = poses_at(pipe, log.cloud_stamps, odom)
    rel = bag / "ground_truth.relations"
    ours = evaluate_relations(rel, (log.cloud_stamps, est), planar=True).to_dict()["local"]
    base = evaluate_relations(rel, (log.cloud_stamps, odom), planar=True).to_dict()["local"]
    print("local relations: odometry", base["trans_mean_m"], base["rot_mean_deg"],
          "estimate", ours["trans_mean_m"], ours["rot_mean_deg"])
    assert ours["count"] == base["count"] > 100
    assert ours["trans_mean_m"] < 0.5 * base["trans_mean_m"]
    assert ours["rot_mean_deg"] < 0.5 * base["rot_mean_deg"]
