# dsg_jit_ros: set-up, demo, tests, benchmarks.  Everything runs in .venv at the repo root.
PY := .venv/bin/python
STAMP := .venv/.installed
# ROS interface packages built by interfaces/build.sh (msg/, srv/ -> dsg_jit_ros_msgs; tf2_msgs)
INTERFACES := requirements-build.txt interfaces/build.sh $(wildcard msg/*.msg srv/*.srv \
	interfaces/*/CMakeLists.txt interfaces/*/package.xml interfaces/*/msg/*.msg interfaces/cmake/*.cmake)

.PHONY: setup demo examples test bench bench-accuracy clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt requirements-test.txt setup.py setup.cfg $(INTERFACES)
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-ros.txt -r requirements-test.txt
	# gtsam 4.3.0's wheel declares pytest>=9 for its own test helpers; it needs only numpy
	$(PY) -m pip install --quiet --no-deps gtsam==4.3.0
	# dsg_jit_ros_msgs (and tf2_msgs where no distribution has it) into .venv; skips what is current
	bash interfaces/build.sh .venv
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	# the online SLAM demo: synthesise out/demo_bag (once), replay it through the node, score it
	$(PY) -m dsg_jit_ros.tools.demo --bag out/demo_bag --out out/demo

examples: setup
	cd examples && ../$(PY) seed_000_voxel_gradient.py && ../$(PY) hero_hybrid.py && ../$(PY) exp15_hybrid_se3_voxel_joint_learning.py

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/posegraph.py ../shared/data/posegraph/sphere2500.g2o --init chordal
	$(PY) bench/posegraph.py ../shared/data/posegraph/parking-garage.g2o
	$(PY) bench/poses_points.py --poses 100 --points 1000 --obs 20000
	$(PY) bench/node_latency.py --windows 20
	$(PY) bench/real_latency.py mit-csail
	$(PY) bench/global_graph.py --nodes 1000
	$(PY) bench/loop_latency.py

# accuracy vs odometry and the library baseline (small_gicp, from bench/requirements-bench.txt);
# map pictures in out/accuracy/.  About 25 min on 2 cores.
bench-accuracy: setup
	$(PY) -m pip install --quiet -r bench/requirements-bench.txt
	$(PY) bench/accuracy.py --png out/accuracy

clean:
	rm -rf .venv build *.egg-info out
