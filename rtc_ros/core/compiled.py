"""Guided sampling at a fixed shape: preallocated, free of host synchronisation, graph-captured.

:func:`rtc_ros.core.guidance.guided_sample` is the specification. :class:`CompiledGuidedSampler`
runs the same arithmetic (the paper's GUIDEDINFERENCE, steps 1-7, and its stop-gradient
variant) for one policy and one (B, H, M) shape, and on CUDA captures the whole n-step loop
of each mode (vanilla, stop-gradient, VJP) in a CUDA graph, so that a chunk's denoising is one
graph launch instead of hundreds of kernel launches issued from Python.

What makes the loop capturable:

* every input lives in a buffer allocated once (noise, previous chunk, prefix weights W,
  and a copy of the policy's context, e.g. a VLM prefix KV cache); each call copies the new
  values into them, on the device, without waiting for the host;
* flow times and guidance weights are Python floats fixed before sampling (n and beta are
  fixed), so they are baked into the captured kernels; no ``.item()``, no data-dependent branch,
  and unlike ``guided_sample`` no finiteness check of the previous chunk (that check reads a
  device value on the host);
* in VJP mode only the action sample requires a gradient: ``torch.autograd.grad`` is asked
  for the gradient with respect to the sample alone, so parameter gradients are never computed
  or stored, whatever ``requires_grad`` says, and the backward pass is captured with the forward.

The policy's ``velocity`` must itself be graph-safe on CUDA: no host synchronisation and no
tensors created from host data inside it (``torch.full`` and arithmetic with Python floats are
fine, ``torch.tensor(python_value, device="cuda")`` is not). Capture errors name this.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from rtc_ros.core.config import GuidanceMode, parse_enum
from rtc_ros.core.guidance import euler_steps, guidance_weight
from rtc_ros.core.policy import FlowPolicy, paper_velocity

_WARMUP_RUNS = 3  # side-stream runs before capture, as torch.cuda.graph requires for autograd


class CompiledGuidedSampler:
    """Guided flow sampling for one policy at a fixed batch size, n and beta.

    ``sample`` takes the same inputs as ``guided_sample`` (with the policy's context in place of
    a velocity field) and returns the same chunk in model space. On CUDA each mode is captured
    in a CUDA graph on its first call; elsewhere (or with ``cuda_graph=False``) the same code
    runs eagerly on the same preallocated buffers.
    """

    def __init__(
        self,
        policy: FlowPolicy,
        batch_size: int,
        num_steps: int = 5,
        beta: float = 5.0,
        cuda_graph: bool | None = None,
    ) -> None:
        """``cuda_graph``: None captures graphs exactly when the policy lives on a CUDA device."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        device = torch.device(policy.device)
        if cuda_graph is None:
            cuda_graph = device.type == "cuda"
        if cuda_graph and device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a policy on a CUDA device, got {device}")
        self.policy = policy
        self.num_steps = num_steps
        self.beta = beta
        self.cuda_graph = cuda_graph
        self.shape = (batch_size, policy.prediction_horizon, policy.action_dim)
        step = 1.0 / num_steps
        self._step = step
        self._taus = [k * step for k in range(num_steps)]
        self._guidance_weights = [guidance_weight(tau, beta) for tau in self._taus]
        self._noise = torch.zeros(self.shape, device=device, dtype=policy.dtype)
        self._target = torch.zeros(self.shape, device=device, dtype=policy.dtype)
        self._mask = torch.zeros((1, self.shape[1], 1), device=device, dtype=policy.dtype)
        self._outputs: dict[GuidanceMode | None, torch.Tensor] = {}
        self._graphs: dict[GuidanceMode | None, torch.cuda.CUDAGraph] = {}
        self._context: Any = None

    def sample(
        self,
        context: Any,
        noise: torch.Tensor,
        previous_chunk: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        guidance: GuidanceMode | str = GuidanceMode.VJP,
    ) -> torch.Tensor:
        """A (B, H, M) chunk in model space, as
        ``guided_sample(paper_velocity(policy, context), ...)``.

        ``context`` is what ``policy.encode`` returned for this chunk; its tensors are copied into
        the sampler's own buffers (their shapes must not change between calls; non-tensor parts
        are taken from the first call). ``previous_chunk`` (B, H, M), right-padded, and
        ``weights`` (H,) as for ``guided_sample``; None samples without guidance.
        """
        mode = None if previous_chunk is None else parse_enum(GuidanceMode, guidance, "guidance")
        self._check(noise, previous_chunk, weights)
        with torch.no_grad():
            self._bind_context(context)
            self._noise.copy_(noise)
            if previous_chunk is not None and weights is not None:  # _check: both or neither
                self._target.copy_(previous_chunk)
                self._mask.copy_(weights.reshape(self._mask.shape))
        if mode not in self._outputs:
            self._outputs[mode] = torch.zeros(
                self.shape, device=self._noise.device, dtype=self._noise.dtype
            )
        if self.cuda_graph:
            graph = self._graphs.get(mode)
            if graph is None:
                graph = self._capture(mode)
            graph.replay()
        else:
            self._integrate(mode)
        return self._outputs[mode].clone()

    @property
    def context(self) -> Any:
        """The sampler's copy of the context (None before the first call)."""
        return self._context

    def _check(self, noise, previous_chunk, weights) -> None:
        if tuple(noise.shape) != self.shape:
            raise ValueError(f"noise must have shape {self.shape}, got {tuple(noise.shape)}")
        if previous_chunk is None:
            return
        if tuple(previous_chunk.shape) != self.shape:
            raise ValueError(
                f"previous_chunk must have shape {self.shape} (right-pad the unexecuted "
                f"actions to H), got {tuple(previous_chunk.shape)}"
            )
        if weights is None or tuple(weights.shape) != (self.shape[1],):
            shape = None if weights is None else tuple(weights.shape)
            raise ValueError(f"weights must have length H={self.shape[1]}, got shape {shape}")

    def _bind_context(self, context: Any) -> None:
        if self._context is None:
            self._context = _map_tensors(context, lambda t: t.detach().clone())
        elif context is not self._context:
            _copy_tensors(self._context, context)

    def _integrate(self, mode: GuidanceMode | None) -> None:
        """The n steps on the preallocated buffers: the body of ``guided_sample``, graph-safe."""
        velocity = paper_velocity(self.policy, self._context)
        output = self._outputs[mode]
        arguments = (
            velocity,
            self._noise,
            self._taus,
            self._step,
            self._target,
            self._mask,
            self._guidance_weights,
            mode,
        )
        if mode is GuidanceMode.VJP:
            actions = euler_steps(*arguments)
            with torch.no_grad():
                output.copy_(actions)
            return
        with torch.no_grad():
            output.copy_(euler_steps(*arguments))

    def _capture(self, mode: GuidanceMode | None) -> torch.cuda.CUDAGraph:
        side = torch.cuda.Stream(device=self._noise.device)
        side.wait_stream(torch.cuda.current_stream(self._noise.device))
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(side):
                for _ in range(_WARMUP_RUNS):
                    self._integrate(mode)
            torch.cuda.current_stream(self._noise.device).wait_stream(side)
            with torch.cuda.graph(graph):
                self._integrate(mode)
        except RuntimeError as error:
            name = "vanilla" if mode is None else mode.value
            raise RuntimeError(
                f"capturing the {name} denoising loop in a CUDA graph failed: the policy's "
                "velocity() "
                "must not synchronise with the host or build tensors from host data (use "
                "torch.full, "
                "or arithmetic with Python floats); pass cuda_graph=False to run it eagerly"
            ) from error
        self._graphs[mode] = graph
        return graph


def _map_tensors(tree: Any, fn) -> Any:
    """Apply ``fn`` to every tensor of a context made of tensors,
    tuples, lists, dicts, dataclasses.
    """
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, (tuple, list)):
        items = [_map_tensors(item, fn) for item in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    if isinstance(tree, dict):
        return type(tree)((key, _map_tensors(value, fn)) for key, value in tree.items())
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        fields = {
            f.name: _map_tensors(getattr(tree, f.name), fn)
            for f in dataclasses.fields(tree)
            if f.init
        }
        return dataclasses.replace(tree, **fields)
    return tree


def _copy_tensors(static: Any, fresh: Any, path: str = "context") -> None:
    if isinstance(static, torch.Tensor):
        if not isinstance(fresh, torch.Tensor) or fresh.shape != static.shape:
            shape = tuple(fresh.shape) if isinstance(fresh, torch.Tensor) else type(fresh).__name__
            raise ValueError(
                f"{path} changed from shape {tuple(static.shape)} to {shape}: "
                "a CompiledGuidedSampler serves one fixed shape"
            )
        static.copy_(fresh)
    elif isinstance(static, (tuple, list)):
        if len(static) != len(fresh):
            raise ValueError(f"{path} changed length from {len(static)} to {len(fresh)}")
        for i, (a, b) in enumerate(zip(static, fresh)):
            _copy_tensors(a, b, f"{path}[{i}]")
    elif isinstance(static, dict):
        if static.keys() != fresh.keys():
            raise ValueError(f"{path} changed keys from {sorted(static)} to {sorted(fresh)}")
        for key in static:
            _copy_tensors(static[key], fresh[key], f"{path}[{key!r}]")
    elif dataclasses.is_dataclass(static) and not isinstance(static, type):
        for f in dataclasses.fields(static):
            if f.init:
                _copy_tensors(getattr(static, f.name), getattr(fresh, f.name), f"{path}.{f.name}")


__all__ = ["CompiledGuidedSampler"]
