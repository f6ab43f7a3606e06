"""The ROS edge: message conversions (and, next, the rclpy node). The only
package that imports ROS message types; the core stays ROS-free."""
