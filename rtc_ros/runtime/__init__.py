"""The real-time runtime around the core, still free of ROS: the controller's fixed-rate loop,
the inference worker, command safety limits and observation assembly. ROS nodes wire these
to topics; the demo and tests can run them without ROS.
"""
