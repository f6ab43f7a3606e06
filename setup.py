"""ament_python / pip installation of dsg_jit_ros (metadata lives in setup.cfg)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dsg_jit_ros"

setup(
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
    ],
)
