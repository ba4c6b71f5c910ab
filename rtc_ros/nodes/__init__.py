"""rclpy nodes: thin adapters that wire ROS topics, parameters and diagnostics to the runtime."""
