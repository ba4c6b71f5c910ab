"""/diagnostics and the status message, shaped like diagnostic_updater: one status per concern.

Levels (each message names the threshold that was crossed):
- inference delay: WARN when d reaches 80% of H - s (the seam nears the unguided region),
  ERROR when d had to be clamped to H - s since the last report, or inference failed.
- controller: ERROR when an underrun occurred since the last report, WARN when chunks planned
  for another controller run or epoch were rejected, or the p99 period error exceeds 25% of
  the period.
- observations: ERROR while inference waits for a complete, fresh observation (stale stamps,
  missing joints or cameras), WARN when messages were rejected since the last report.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from rtc_ros.msg import RtcStatus
from rtc_ros.runtime.control_loop import ControllerReport

if TYPE_CHECKING:  # the inference worker needs torch; the controller node must not load it
    from rtc_ros.runtime.inference_worker import InferenceReport

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


@dataclasses.dataclass(frozen=True)
class Health:
    level: bytes
    message: str
    values: dict[str, str]


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def _fmt4(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


class HealthMonitor:
    """Turns reports into per-concern health, remembering counters to detect new events."""

    def __init__(self, prediction_horizon: int, period_s: float, device: str) -> None:
        self.prediction_horizon = prediction_horizon
        self.period_s = period_s
        self.device = device
        self._last_underruns = 0
        self._last_clamps = 0
        self._last_failures = 0
        self._last_rejected = 0
        self._last_rejected_chunks = 0

    def inference(self, report: InferenceReport) -> Health:
        overlap = self.prediction_horizon - report.execution_horizon
        values = {
            "delay_history_ticks": ",".join(str(d) for d in report.delay_history),
            "inference_delay_estimate_ticks": str(report.inference_delay_estimate),
            "execution_horizon_ticks": str(report.execution_horizon),
            "prediction_horizon_ticks": str(self.prediction_horizon),
            "chunk_latency_p50_ms": _fmt(report.latency_p50_ms),
            "chunk_latency_p95_ms": _fmt(report.latency_p95_ms),
            "chunk_latency_max_ms": _fmt(report.latency_max_ms),
            "chunks": str(report.chunks),
            "delay_clamps": str(report.delay_clamps),
            "inference_failures": str(report.failures),
            "emulated_latency_ms": _fmt(report.emulated_latency_ms),
            "actions_clipped_to_limits": str(report.actions_clipped),
            "device": self.device,
        }
        new_clamps = report.delay_clamps - self._last_clamps
        new_failures = report.failures - self._last_failures
        self._last_clamps, self._last_failures = report.delay_clamps, report.failures
        if new_failures > 0:
            level, message = ERROR, f"{new_failures} inference(s) failed since the last report"
        elif new_clamps > 0:
            level, message = ERROR, f"d exceeded H - s = {overlap} ticks and was clamped"
        elif report.chunks > 1 and report.inference_delay_estimate >= 0.8 * overlap:
            level, message = (
                WARN,
                f"d = {report.inference_delay_estimate} ticks is >= 80% of H - s = {overlap}",
            )
        else:
            level, message = OK, "inference delay within the guided overlap"
        if report.emulated_latency_ms > 0:
            message += (
                f" (latency emulated: inference padded to {report.emulated_latency_ms:.0f} ms)"
            )
        return Health(level, message, values)

    def controller(self, report: ControllerReport) -> Health:
        values = {
            "commands_published": str(report.commands_published),
            "swaps": str(report.swaps),
            "underruns": str(report.underruns),
            "overruns": str(report.overruns),
            "rejected_actions": str(report.rejected_actions),
            "rejected_chunks": str(report.rejected_chunks),
            "clamped_commands": str(report.clamped_commands),
            "period_error_p50_ms": _fmt(report.period_error_p50_ms),
            "period_error_p99_ms": _fmt(report.period_error_p99_ms),
            "period_error_max_ms": _fmt(report.period_error_max_ms),
            "period_ms": _fmt(self.period_s * 1e3),
            "thread_priority": str(report.thread_priority),
            "scheduler": "SCHED_FIFO" if report.thread_priority > 0 else "normal",
            "cpu_affinity": ",".join(str(cpu) for cpu in report.cpu_affinity),
            "memory_locked": str(report.memory_locked).lower(),
            "realtime_refused": str(report.realtime_refused).lower(),
            "garbage_collections_at_safe_points": str(report.garbage_collections),
            "paused_ticks": str(report.paused_ticks),
            "seam_step_p50_rad": _fmt4(report.seam_step_p50_rad),
            "seam_step_max_rad": _fmt4(report.seam_step_max_rad),
            "in_chunk_step_p50_rad": _fmt4(report.in_chunk_step_p50_rad),
        }
        new_underruns = report.underruns - self._last_underruns
        new_rejected_chunks = report.rejected_chunks - self._last_rejected_chunks
        self._last_underruns, self._last_rejected_chunks = report.underruns, report.rejected_chunks
        if new_underruns > 0 or report.underrun_active:
            return Health(
                ERROR,
                f"underrun: {new_underruns} tick(s) held the last command since the last report",
                values,
            )
        if new_rejected_chunks > 0:
            return Health(
                WARN,
                f"{new_rejected_chunks} chunk(s) planned for another controller run or epoch "
                "rejected",
                values,
            )
        limit_ms = 0.25 * self.period_s * 1e3
        if report.period_error_p99_ms > limit_ms:
            return Health(
                WARN,
                f"period error p99 {report.period_error_p99_ms:.2f} ms > {limit_ms:.1f} ms "
                "(25% of the period)",
                values,
            )
        refused = "; real-time settings refused (see the log)" if report.realtime_refused else ""
        if report.commands_published == 0:
            return Health(OK, f"waiting for the first chunk; nothing commanded{refused}", values)
        return Health(OK, f"commanding{refused}", values)

    def observations(
        self, rejected: int, last_rejection: str, waiting: bool, waiting_reason: str
    ) -> Health:
        values = {
            "rejected_observations": str(rejected),
            "last_rejection": last_rejection,
            "waiting_reason": waiting_reason,
        }
        new_rejected = rejected - self._last_rejected
        self._last_rejected = rejected
        if waiting:
            return Health(ERROR, f"no usable observation: {waiting_reason}", values)
        if new_rejected > 0:
            return Health(WARN, f"{new_rejected} message(s) rejected: {last_rejection}", values)
        return Health(OK, "observations complete and fresh", values)


def diagnostic_array(
    stamp, node_name: str, hardware_id: str, healths: dict[str, Health]
) -> DiagnosticArray:
    array = DiagnosticArray()
    array.header.stamp = stamp.to_msg()
    for concern, health in healths.items():
        array.status.append(
            DiagnosticStatus(
                level=health.level,
                name=f"{node_name}: {concern}",
                message=health.message,
                hardware_id=hardware_id,
                values=[KeyValue(key=k, value=v) for k, v in health.values.items()],
            )
        )
    return array


def status_message(
    stamp,
    inference: InferenceReport,
    controller: ControllerReport,
    rejected: int,
    device: str,
    method: str,
    holding: bool = False,
) -> RtcStatus:
    message = RtcStatus(
        delay_history=list(inference.delay_history),
        inference_delay_estimate=inference.inference_delay_estimate,
        execution_horizon=inference.execution_horizon,
        chunk_latency_p50_ms=inference.latency_p50_ms,
        chunk_latency_p95_ms=inference.latency_p95_ms,
        chunk_latency_max_ms=inference.latency_max_ms,
        swaps=controller.swaps,
        underruns=controller.underruns,
        commands_published=controller.commands_published,
        rejected_observations=rejected,
        controller_period_error_p50_ms=controller.period_error_p50_ms,
        controller_period_error_p99_ms=controller.period_error_p99_ms,
        controller_period_error_max_ms=controller.period_error_max_ms,
        device=device,
        method=method,
        controller_thread_priority=controller.thread_priority,
        controller_cpu_affinity=list(controller.cpu_affinity),
        controller_memory_locked=controller.memory_locked,
        emulated_latency_ms=inference.emulated_latency_ms,
        holding=holding,
    )
    message.header.stamp = stamp.to_msg()
    return message
