"""Replay the demo bag into the SLAM node, on simulated time.

    make_demo_bag --out out/demo_bag
    ros2 launch dsg_jit_ros demo.launch.py [bag:=out/demo_bag] [rate:=1.0] [rviz:=true] [linger:=3.0]
        [sensor:=lidar_3d]

slam.launch.py with use_sim_time:=true and sensor:=lidar_3d (the demo bag; planar_laser
for a 2D laser bag), `bag_player BAG --rate R --clock` (which starts
playing once the node subscribes), optionally rviz2 with config/dsg_jit_ros.rviz.  The launch ends `linger` seconds
after the player has delivered the whole bag (at once if the player fails or the node exits).
"""

import os

from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    RegisterEventHandler,
    Shutdown,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import (
    PythonLaunchDescriptionSource,
    load_python_launch_file_as_module,
)
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

HERE = os.path.dirname(os.path.abspath(__file__))
SLAM_LAUNCH = os.path.join(HERE, 'slam.launch.py')
# The node subscribes only after the solver's warm-up compile (20-30 s on 2 busy cores):
# the player waits for one subscriber on each input topic of the bag before playing,
# else the start of the bag would be lost.
PLAYER_WAIT = ['--wait-subscribers', '1', '--wait-topics', '/odom', '/points', '--wait-timeout', '300']


def _is_slam_node(action):
    return isinstance(action, Node) and action.node_name.endswith('/dsg_jit_slam')


def generate_launch_description():
    slam = load_python_launch_file_as_module(SLAM_LAUNCH)
    share = os.path.dirname(HERE)

    player = ExecuteProcess(
        cmd=[slam.executable_path('bag_player'), LaunchConfiguration('bag'),
             '--rate', LaunchConfiguration('rate'), '--clock', *PLAYER_WAIT],
        name='bag_player', output='screen')

    def after_player(event, context):
        if event.returncode != 0:
            return [Shutdown(reason=f'bag_player exited with code {event.returncode}')]
        # Linger before shutting down: when the player exits, its last cloud has been
        # delivered (it waits for acknowledgements) but the node may still be solving that
        # keyframe (a window solve: up to about a second on 2 cores) and ~/map and ~/voxels
        # are throttled (output.markers_period, 1 s).  The linger lets the final path and
        # map reach RViz or a recorder before SIGINT; a negative linger keeps the node (and
        # RViz) running until Ctrl-C.
        linger = float(context.launch_configurations['linger'])
        if linger < 0:
            return None
        return [TimerAction(period=linger, actions=[Shutdown(reason='the bag has been played')])]

    return LaunchDescription([
        DeclareLaunchArgument('bag', default_value='out/demo_bag',
                              description='bag directory (make_demo_bag --out out/demo_bag)'),
        DeclareLaunchArgument('rate', default_value='1.0', description='replay rate'),
        DeclareLaunchArgument('rviz', default_value='false', description='start rviz2'),
        DeclareLaunchArgument(
            'rviz_config', default_value=os.path.join(share, 'config', 'dsg_jit_ros.rviz'),
            description='RViz2 configuration'),
        DeclareLaunchArgument(
            'linger', default_value='3.0',
            description='seconds to keep running after the bag ends (negative: until Ctrl-C)'),
        DeclareLaunchArgument('sensor', default_value='lidar_3d',
                              description='sensor class of the bag (the demo bag: a 3D LiDAR)'),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(SLAM_LAUNCH),
            # params_file, namespace, odom_topic, points_topic: slam.launch.py's arguments
            launch_arguments={'use_sim_time': 'true', 'sensor': LaunchConfiguration('sensor')}.items()),
        player,
        RegisterEventHandler(OnProcessExit(target_action=player, on_exit=after_player)),
        RegisterEventHandler(OnProcessExit(
            target_action=_is_slam_node,
            on_exit=[Shutdown(reason='the SLAM node exited')])),
        Node(
            package='rviz2', executable='rviz2', name='rviz2',
            arguments=['-d', LaunchConfiguration('rviz_config')],
            parameters=[{'use_sim_time': True}],
            condition=IfCondition(LaunchConfiguration('rviz')),
            output='screen'),
    ])
