"""Start the dsg_jit_ros SLAM node (node name dsg_jit_slam).

    ros2 launch dsg_jit_ros slam.launch.py [sensor:=planar_laser|lidar_3d] [params_file:=...]
        [use_sim_time:=true] [odom_topic:=/odom] [points_topic:=/points] [namespace:=robot1]

``sensor`` picks the shipped parameter file of a sensor class (config/planar_laser.yaml:
2D lasers on ground robots; config/lidar_3d.yaml: 3D LiDARs); empty: config/params.yaml
(every default, planar mode detected from the first cloud).  ``params_file`` (optional)
is loaded after it, so its values win.

Outputs: ~/path, ~/odometry, ~/voxels, ~/map, ~/status and map->odom on /tf
(see README).  Without a ROS distribution, see tools/launch_venv.sh.
"""

import os
import shutil
import sys
import sysconfig

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

PACKAGE = 'dsg_jit_ros'
NODE_NAME = 'dsg_jit_slam'
SENSORS = ('', 'planar_laser', 'lidar_3d')  # '' -> config/params.yaml


def _share_directory():
    """share/dsg_jit_ros of the installed package, else the checkout holding this file."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return get_package_share_directory(PACKAGE)
    except (ImportError, LookupError):
        # LookupError covers PackageNotFoundError; launch/ sits next to config/ in a checkout.
        return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ament_executable(name):
    """<prefix>/lib/dsg_jit_ros/<name> of an ament install (colcon, a distro), else None."""
    try:
        from ament_index_python.packages import get_package_prefix
        path = os.path.join(get_package_prefix(PACKAGE), 'lib', PACKAGE, name)
    except (ImportError, LookupError):
        return None
    return path if os.access(path, os.X_OK) else None


def executable_path(name):
    """Path of the console script `name` of this package (also used by demo.launch.py).

    An ament install has it in <prefix>/lib/dsg_jit_ros/ (where launch_ros' Node(package=...,
    executable=...) looks); a plain pip install puts it next to the interpreter or on PATH.
    """
    path = _ament_executable(name)
    for scripts in (sysconfig.get_path('scripts'), os.path.dirname(sys.executable)):
        if path is None and os.access(os.path.join(scripts, name), os.X_OK):
            path = os.path.join(scripts, name)
    path = path or shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"executable '{name}' of package '{PACKAGE}' not found: install the package "
            '(colcon build, or pip install . into the interpreter that runs launch)')
    return path


def _node_executable(name):
    """Node(...) keyword arguments that start the console script `name`."""
    if _ament_executable(name):
        return {'package': PACKAGE, 'executable': name}
    return {'executable': executable_path(name)}


def _parameter_files(context):
    """The sensor class's file (or params.yaml), then the user's params_file if any."""
    sensor = context.launch_configurations['sensor']
    if sensor not in SENSORS:
        raise RuntimeError(f"sensor:={sensor!r} is not one of {', '.join(repr(s) for s in SENSORS)}")
    files = [os.path.join(_share_directory(), 'config', f"{sensor or 'params'}.yaml")]
    if context.launch_configurations['params_file']:
        files.append(context.launch_configurations['params_file'])
    return files


def _slam_node(context):
    use_sim_time = LaunchConfiguration('use_sim_time')
    return [Node(
        **_node_executable('slam_node'),
        name=NODE_NAME,
        namespace=LaunchConfiguration('namespace'),
        # The files first: the launch argument use_sim_time wins over a value in them.
        parameters=_parameter_files(context) + [{'use_sim_time': ParameterValue(use_sim_time, value_type=bool)}],
        remappings=[
            ('odom', LaunchConfiguration('odom_topic')),
            ('points', LaunchConfiguration('points_topic')),
        ],
        output='screen',
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'sensor', default_value='',
            description='parameter file of a sensor class: planar_laser, lidar_3d, or empty for params.yaml'),
        DeclareLaunchArgument(
            'params_file', default_value='',
            description='extra ROS parameters file of the SLAM node, loaded after the sensor file'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false',
            description='use /clock (true when replaying a bag with --clock)'),
        DeclareLaunchArgument(
            'odom_topic', default_value='/odom', description='nav_msgs/Odometry input'),
        DeclareLaunchArgument(
            'points_topic', default_value='/points', description='sensor_msgs/PointCloud2 input'),
        DeclareLaunchArgument(
            'namespace', default_value='', description='ROS namespace of the node'),
        OpaqueFunction(function=_slam_node),
    ])
