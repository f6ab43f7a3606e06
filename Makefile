# dsg_jit_ros: set-up, demo, tests, benchmarks.  Everything runs in .venv at the repo root.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt requirements-test.txt setup.py setup.cfg
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-ros.txt -r requirements-test.txt
	# gtsam 4.3.0's wheel declares pytest>=9 for its own test helpers; it needs only numpy
	$(PY) -m pip install --quiet --no-deps gtsam==4.3.0
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	cd examples && ../$(PY) seed_000_voxel_gradient.py && ../$(PY) hero_hybrid.py && ../$(PY) exp15_hybrid_se3_voxel_joint_learning.py

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/posegraph.py ../shared/data/posegraph/sphere2500.g2o --init chordal
	$(PY) bench/posegraph.py ../shared/data/posegraph/parking-garage.g2o
	$(PY) bench/poses_points.py --poses 100 --points 1000 --obs 20000

clean:
	rm -rf .venv build *.egg-info out
