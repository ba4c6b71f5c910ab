"""Managed-node plumbing shared by the RTC nodes.

The nodes are ROS 2 managed nodes (the lifecycle of ros2_control's controllers): created
*unconfigured*; ``configure`` loads what they need and checks it (*inactive*); ``activate`` starts
commanding (*active*); ``deactivate`` stops and holds; ``cleanup`` releases everything
(*unconfigured* again); ``shutdown`` ends from any state. A supervisor drives them through
``<node>/change_state`` and ``<node>/get_state`` (``ros2 lifecycle set /rtc activate``), or the
node brings itself up when its ``autostart`` parameter is true (what the launch files set).

Each node supplies four steps; :class:`ManagedNode` runs them, turns a failure into a failed
transition with the reason logged (the node stays where it was and may try again), and makes
sure that shutdown, an error or the end of the process leaves no thread, process, shared memory
or GPU memory behind. Every publisher, subscription and timer created by ``configure`` is
destroyed by ``cleanup``, so a node can be configured again.
"""

from __future__ import annotations

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import (
    LifecycleNode,
    LifecyclePublisher,
    LifecycleState,
    TransitionCallbackReturn,
)


class ManagedNode(LifecycleNode):
    """A lifecycle node that runs ``configure_runtime`` ... ``release_runtime`` of its subclass."""

    def __init__(self, node_name: str, **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self._configured = False
        self._active = False
        self._kept_entities: set[int] = set()
        self.configure_error: str | None = None
        """Why the last configure failed (also logged), for an in-process supervisor."""
        self.declare_parameter(
            "autostart",
            False,
            ParameterDescriptor(
                description="Configure and activate at start (launch's autostart:=true); "
                "false: stay unconfigured for a supervisor",
                read_only=True,
            ),
        )

    def bring_up(self) -> None:
        """With the ``autostart`` parameter: configure, then activate, in the node's own process.

        Every start of the process comes back active this way, a respawn included. (Launch
        asking over ``change_state`` instead loses the request when it reaches a respawned
        process before that serves the service, as the dead one still shows in the graph.)
        ValueError when a transition fails; the log has said why.
        """
        if not self.get_parameter("autostart").value:
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise ValueError(f"configure failed: {self.configure_error}")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise ValueError("activate failed")

    # -- the node's steps ------------------------------------------------------------------
    def configure_runtime(self) -> None:
        """Read and check the parameters, load what the node needs, create its ROS entities."""
        raise NotImplementedError

    def activate_runtime(self) -> None:
        """Start commanding (or start waiting for the measured state to start from)."""
        raise NotImplementedError

    def deactivate_runtime(self) -> None:
        """Stop inference and commanding; nothing is published afterwards. Must be idempotent."""
        raise NotImplementedError

    def release_runtime(self) -> None:
        """Drop what configure loaded (policy, GPU memory). Must be idempotent."""
        raise NotImplementedError

    # -- transitions -----------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        # What exists before configure (parameter services, the lifecycle interface) lives as
        # long as the node; whatever configure creates goes at cleanup.
        self._kept_entities = {
            id(e) for e in (*self.publishers, *self.subscriptions, *self.timers)
        }
        try:
            self.configure_runtime()
        except Exception as error:  # noqa: BLE001 - any failure leaves the node unconfigured, reason logged
            self.configure_error = str(error)
            self.get_logger().error(f"configure failed: {error}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        self.get_logger().info("configured (inactive)")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers first
        try:
            self.activate_runtime()
        except Exception as error:  # noqa: BLE001 - the node stays inactive, reason logged
            self.get_logger().error(f"activate failed: {error}")
            self.deactivate_runtime()
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        self._active = True
        self.get_logger().info("active")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate_runtime()
        self._active = False
        self.get_logger().info("deactivated (inactive): not commanding")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up (unconfigured)")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_and_release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop and release everything, then go back to unconfigured."""
        self.get_logger().error(
            f"error while leaving {state.label}: stopped and released everything"
        )
        self._stop_and_release()
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        """At the end of the process: the shutdown transition, from whatever state the node is in.

        Where the transition cannot run (the context is already shut down, or the node has been
        shut down before), the runtime is stopped and released directly.
        """
        if self._configured:
            try:
                self.trigger_shutdown()
            except Exception:  # noqa: BLE001 - e.g. already finalized; release directly below
                pass
        self._stop_and_release()

    # -- internals -------------------------------------------------------------------------
    def _stop_and_release(self) -> None:
        if self._active:
            self.deactivate_runtime()
            self._active = False
        if self._configured:
            self._release()

    def _release(self) -> None:
        self.release_runtime()

        def created(entities) -> list:
            return [e for e in entities if id(e) not in self._kept_entities]

        for publisher in created(self.publishers):
            if isinstance(publisher, LifecyclePublisher):
                self.destroy_lifecycle_publisher(publisher)
            else:
                self.destroy_publisher(publisher)
        for subscription in created(self.subscriptions):
            self.destroy_subscription(subscription)
        for timer in created(self.timers):
            self.destroy_timer(timer)
        self._configured = False
