"""Flow policies that satisfy :class:`rtc_ros.core.policy.FlowPolicy`."""
