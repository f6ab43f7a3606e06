"""Mapping front end without ROS: voxelisation, odometry buffering, keyframing."""
