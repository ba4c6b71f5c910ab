"""LeRobot's flow VLAs (SmolVLA, pi0, pi0.5) behind the core's FlowPolicy protocol.

Written against ``lerobot`` 0.4.4 (:data:`LEROBOT_VERSION`). ``encode`` runs the VLM once per
chunk (LeRobot's ``embed_prefix`` and prefill) and keeps its KV cache with the attention mask
and positions of the action tokens, which do not depend on the flow time; ``velocity`` then
runs only the action expert on that cache (LeRobot's ``denoise_step`` minus the mask building,
which builds tensors from Python lists and so could not be captured in a CUDA graph).

Which policies build, and how to install LeRobot next to this package, is in
README.md, 'LeRobot in the same venv'. In short:

* SmolVLA: lerobot 0.4.4 with transformers 4.57 (lerobot's ``smolvla`` extra). LeRobot reads
  the SmolVLM2 configuration and processor from the Hugging Face hub even for random weights;
  :func:`build_lerobot_policy` supplies SmolVLM2-500M's architecture instead
  (:data:`SMOLVLM2_500M`) and the two image token ids the model reads from the processor,
  so random weights need no download.
* pi0 and pi0.5: LeRobot 0.4.4's implementation needs openpi's patched transformers 4.53.2
  (adaptive RMSNorm in Gemma, ``transformers.models.siglip.check``), which is not on PyPI;
  without it :func:`build_lerobot_policy` raises :class:`LeRobotUnavailable` saying so.

Observations are the model's inputs after LeRobot's preprocessor (images resized and scaled to
[-1, 1], language tokenised, state normalised and padded): :meth:`example_observation` makes
random ones; :mod:`rtc_ros.policies.lerobot.folder` makes them from robot observations.
Actions run in the model's normalised space padded to ``max_action_dim``; pass the dataset's
action statistics to map them to robot units.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import importlib.metadata
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from rtc_ros.core.policy import TimeConvention

LEROBOT_VERSION = "0.4.4"
KINDS = ("smolvla", "pi0", "pi05")

SMOLVLM2_500M: dict = {
    "model_type": "smolvlm",
    "scale_factor": 4,
    "image_token_id": 49190,
    "text_config": {
        "model_type": "llama",
        "hidden_size": 960,
        "intermediate_size": 2560,
        "num_hidden_layers": 32,
        "num_attention_heads": 15,
        "num_key_value_heads": 5,
        "head_dim": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100_000.0,
        "max_position_embeddings": 8192,
        "vocab_size": 49_280,
        "tie_word_embeddings": False,
    },
    "vision_config": {
        "model_type": "smolvlm_vision",
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "patch_size": 16,
        "image_size": 512,
    },
}
"""HuggingFaceTB/SmolVLM2-500M-Video-Instruct's architecture (SmolLM2-360M text model, SigLIP
base-patch16-512 vision model, pixel shuffle 4): what SmolVLA is built on."""

TINY_SMOLVLM: dict = {
    "model_type": "smolvlm",
    "scale_factor": 2,
    "image_token_id": 60,
    "text_config": {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100_000.0,
        "max_position_embeddings": 512,
        "vocab_size": 64,
        "tie_word_embeddings": False,
    },
    "vision_config": {
        "model_type": "smolvlm_vision",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "patch_size": 16,
        "image_size": 64,
    },
}
"""The same architecture at a size for tests on a CPU."""

SMOLVLM2_500M_NAME = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
SMOLVLM2_IMAGE_TOKEN_IDS = (49_189, 49_152)
"""SmolVLM2's <fake_token_around_image> and <global-img>, which SmolVLA reads from its
processor."""
TINY_IMAGE_TOKEN_IDS = (1, 2)


class LeRobotUnavailable(ImportError):
    """LeRobot (or the transformers build a LeRobot policy needs) is not importable."""


def lerobot_available(kind: str = "smolvla") -> str | None:
    """None when ``kind`` can be built here, else the reason it cannot (for skips and errors)."""
    try:
        _import_lerobot(kind)
    except LeRobotUnavailable as error:
        return str(error)
    return None


def _import_lerobot(kind: str):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    try:
        version = importlib.metadata.version("lerobot")
    except importlib.metadata.PackageNotFoundError:
        raise LeRobotUnavailable(
            f"lerobot is not installed: pip install --no-deps lerobot=={LEROBOT_VERSION} and its "
            "policy dependencies (README.md, 'LeRobot in the same venv', 'LeRobot')"
        ) from None
    module_name = {
        "smolvla": "lerobot.policies.smolvla.modeling_smolvla",
        "pi0": "lerobot.policies.pi0.modeling_pi0",
        "pi05": "lerobot.policies.pi05.modeling_pi05",
    }[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise LeRobotUnavailable(
            f"lerobot {version} is installed but {module_name} does not import: "
            f"{error} (README.md, 'LeRobot in the same venv' lists what it needs)"
        ) from error
    if kind != "smolvla":
        try:
            from transformers.models.siglip import check

            patched = check.check_whether_transformers_replace_is_installed_correctly()
        except ImportError:
            patched = False
        if not patched:
            import transformers

            raise LeRobotUnavailable(
                f"lerobot {version}'s {kind} needs openpi's patched transformers 4.53.2 "
                "(transformers_replace from Physical-Intelligence/openpi copied over "
                "transformers); "
                f"found transformers {transformers.__version__} without it. PyPI has no such "
                "build."
            )
    return module


@dataclasses.dataclass(frozen=True)
class LeRobotPrefix:
    """The VLM prefix of one chunk, and the action tokens' attention mask and positions."""

    past_key_values: Any
    """Per-layer keys and values of the prefix (LeRobot's own cache layout)."""
    attention_mask: torch.Tensor
    """(B, H, prefix + H) for SmolVLA; (B, 1, H', prefix + H') additive for pi0."""
    position_ids: torch.Tensor
    state: torch.Tensor | None = None
    """pi0 embeds the state in the suffix (its state token), so it travels with the prefix."""


class LeRobotFlowPolicy:
    """A LeRobot flow VLA as a :class:`~rtc_ros.core.policy.FlowPolicy`
    (pi0's convention: t = 1 noise).
    """

    time_convention = TimeConvention.NOISE_AT_1

    def __init__(
        self,
        kind: str,
        model: torch.nn.Module,
        action_mean: torch.Tensor | None = None,
        action_std: torch.Tensor | None = None,
    ) -> None:
        """``model``: LeRobot's ``VLAFlowMatching`` (SmolVLA) or
        ``PI0Pytorch`` / ``PI05Pytorch``.
        """
        self.kind = kind
        self.model = model.eval().requires_grad_(False)
        config = model.config
        self.prediction_horizon = config.chunk_size
        self.action_dim = config.max_action_dim
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        dims = self.action_dim
        mean = (
            torch.zeros(dims)
            if action_mean is None
            else torch.as_tensor(action_mean, dtype=torch.float32)
        )
        std = (
            torch.ones(dims)
            if action_std is None
            else torch.as_tensor(action_std, dtype=torch.float32)
        )
        if mean.shape != std.shape or mean.ndim != 1 or mean.shape[0] > dims:
            raise ValueError(
                f"action_mean and action_std must be vectors of one length <= {dims}, "
                f"got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        self.robot_action_dim = mean.shape[0]
        self._mean = mean.to(self.device, self.dtype)
        self._std = std.to(self.device, self.dtype)

    def prefix_tokens(self, context: LeRobotPrefix) -> int:
        """Tokens in the cached prefix (the attention mask spans prefix and suffix)."""
        return int(context.attention_mask.shape[-1] - context.position_ids.shape[-1])

    def versions(self) -> dict[str, str]:
        import transformers

        return {
            "lerobot": importlib.metadata.version("lerobot"),
            "transformers": transformers.__version__,
        }

    def parameter_counts(self) -> dict[str, int]:
        if self.kind == "smolvla":
            vlm = self.model.vlm_with_expert.vlm
            expert_params = sum(
                p.numel() for p in self.model.vlm_with_expert.lm_expert.parameters()
            )
        else:
            vlm = self.model.paligemma_with_expert.paligemma
            expert_params = sum(
                p.numel() for p in self.model.paligemma_with_expert.gemma_expert.parameters()
            )
        total = sum(p.numel() for p in self.model.parameters())
        vlm_params = sum(p.numel() for p in vlm.parameters())
        return {"vlm": vlm_params, "expert": expert_params, "total": total}

    # -- observations -----------------------------------------------------------------------------

    def example_observation(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        num_images: int = 3,
        language_tokens: int | None = None,
    ) -> dict:
        """Random model inputs: ``images`` (B, N, 3, S, S) in [-1, 1], ``image_masks`` (B, N),
        ``tokens`` and ``token_masks`` (B, L), ``state`` (B, max_state_dim).
        """
        config = self.model.config
        size = self._image_size()
        vocab = self._vocab_size()
        length = config.tokenizer_max_length if language_tokens is None else language_tokens
        images = (
            torch.rand((batch_size, num_images, 3, size, size), generator=generator) * 2.0 - 1.0
        )
        tokens = torch.randint(0, vocab, (batch_size, length), generator=generator)
        state = torch.randn((batch_size, config.max_state_dim), generator=generator)
        return {
            "images": images.to(self.device, torch.float32),
            "image_masks": torch.ones(
                (batch_size, num_images), dtype=torch.bool, device=self.device
            ),
            "tokens": tokens.to(self.device),
            "token_masks": torch.ones_like(tokens, dtype=torch.bool).to(self.device),
            "state": state.to(self.device, torch.float32),
        }

    def _image_size(self) -> int:
        if self.kind == "smolvla":
            return self.model.vlm_with_expert.config.vision_config.image_size
        return self.model.config.image_resolution[0]

    def _vocab_size(self) -> int:
        if self.kind == "smolvla":
            return self.model.vlm_with_expert.config.text_config.vocab_size
        return self.model.paligemma_with_expert.paligemma.config.text_config.vocab_size

    # -- FlowPolicy
    # --------------------------------------------------------------------------------

    def encode(self, observation: Mapping[str, Any]) -> LeRobotPrefix:
        """The VLM prefill: LeRobot's ``sample_actions`` up to the denoising loop."""
        images = torch.as_tensor(observation["images"], device=self.device)
        image_masks = torch.as_tensor(observation["image_masks"], device=self.device)
        tokens = torch.as_tensor(observation["tokens"], device=self.device)
        token_masks = torch.as_tensor(observation["token_masks"], device=self.device)
        state = torch.as_tensor(observation["state"], device=self.device).to(self.dtype)
        image_list = [image.to(self.dtype) for image in images.unbind(1)]
        mask_list = list(image_masks.unbind(1))
        if self.kind == "smolvla":
            return self._encode_smolvla(image_list, mask_list, tokens, token_masks, state)
        return self._encode_pi(image_list, mask_list, tokens, token_masks, state)

    def velocity(self, actions: torch.Tensor, time: float, context: LeRobotPrefix) -> torch.Tensor:
        """u(x_t, o, t) from the action expert alone; graph-safe (no
        host data, no mask building).
        """
        model = self.model
        batch = actions.shape[0]
        timestep = torch.full((batch,), time, dtype=torch.float32, device=actions.device)
        x = actions.to(self.dtype)
        if self.kind == "smolvla":
            suffix = _embed_actions(model, x, timestep, model.vlm_with_expert.expert_hidden_size)
            outputs, _ = model.vlm_with_expert.forward(
                attention_mask=context.attention_mask,
                position_ids=context.position_ids,
                past_key_values=context.past_key_values,
                inputs_embeds=[None, suffix],
                use_cache=True,
                fill_kv_cache=False,
            )
        else:
            suffix = self._embed_pi_suffix(x, timestep, context.state)
            outputs, _ = model.paligemma_with_expert.forward(
                attention_mask=context.attention_mask,
                position_ids=context.position_ids,
                past_key_values=context.past_key_values,
                inputs_embeds=[None, suffix.embeddings],
                use_cache=False,
                adarms_cond=[None, suffix.adarms_cond],
            )
        out = outputs[1][:, -self.prediction_horizon :]
        return model.action_out_proj(out.to(model.action_out_proj.weight.dtype)).to(actions.dtype)

    def to_model_space(self, actions: torch.Tensor) -> torch.Tensor:
        normalised = (actions - self._mean.to(actions.dtype)) / self._std.to(actions.dtype)
        return torch.nn.functional.pad(normalised, (0, self.action_dim - actions.shape[-1]))

    def from_model_space(self, model_actions: torch.Tensor) -> torch.Tensor:
        robot = model_actions[..., : self.robot_action_dim]
        return robot * self._std.to(robot.dtype) + self._mean.to(robot.dtype)

    # -- SmolVLA ----------------------------------------------------------------------------------

    def _encode_smolvla(self, images, image_masks, tokens, token_masks, state) -> LeRobotPrefix:
        from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks

        model = self.model
        prefix, prefix_pad, prefix_att = model.embed_prefix(
            images, image_masks, tokens, token_masks, state=state
        )
        _, past_key_values = model.vlm_with_expert.forward(
            attention_mask=make_att_2d_masks(prefix_pad, prefix_att),
            position_ids=torch.cumsum(prefix_pad, dim=1) - 1,
            past_key_values=None,
            inputs_embeds=[prefix, None],
            use_cache=True,
            fill_kv_cache=True,
        )
        # denoise_step's masks: every action token sees the prefix and all action tokens.
        batch, horizon = prefix_pad.shape[0], self.prediction_horizon
        suffix_pad = torch.ones((batch, horizon), dtype=torch.bool, device=self.device)
        suffix_2d = make_att_2d_masks(suffix_pad, torch.ones_like(suffix_pad))
        prefix_2d = prefix_pad[:, None, :].expand(batch, horizon, prefix_pad.shape[1])
        mask = torch.cat([prefix_2d, suffix_2d], dim=2)
        positions = prefix_pad.sum(-1)[:, None] + torch.cumsum(suffix_pad, dim=1) - 1
        return LeRobotPrefix(past_key_values, mask, positions)

    # -- pi0 / pi0.5
    # -------------------------------------------------------------------------------

    def _encode_pi(self, images, image_masks, tokens, token_masks, state) -> LeRobotPrefix:
        module = _import_lerobot(self.kind)
        model = self.model
        prefix, prefix_pad, prefix_att = model.embed_prefix(
            images, image_masks, tokens, token_masks
        )
        prefix_2d = module.make_att_2d_masks(prefix_pad, prefix_att)
        positions = torch.cumsum(prefix_pad, dim=1) - 1
        language_model = model.paligemma_with_expert.paligemma.language_model
        language_model.config._attn_implementation = "eager"  # as sample_actions does
        model.paligemma_with_expert.gemma_expert.model.config._attn_implementation = "eager"
        _, past_key_values = model.paligemma_with_expert.forward(
            attention_mask=model._prepare_attention_masks_4d(prefix_2d),
            position_ids=positions,
            past_key_values=None,
            inputs_embeds=[prefix.to(self.dtype), None],
            use_cache=True,
        )
        cache = tuple(
            (past_key_values[i][0], past_key_values[i][1]) for i in range(len(past_key_values))
        )
        suffix_length = self.prediction_horizon + (1 if self.kind == "pi0" else 0)
        batch = prefix_pad.shape[0]
        suffix_pad = torch.ones((batch, suffix_length), dtype=torch.bool, device=self.device)
        # pi0: the state token opens a block the actions see but that does not see them.
        suffix_att = torch.zeros_like(suffix_pad)
        suffix_att[:, 0] = True
        if self.kind == "pi0":
            suffix_att[:, 1] = True
        suffix_2d = module.make_att_2d_masks(suffix_pad, suffix_att)
        prefix_pad_2d = prefix_pad[:, None, :].expand(batch, suffix_length, prefix_pad.shape[1])
        mask = model._prepare_attention_masks_4d(torch.cat([prefix_pad_2d, suffix_2d], dim=2)).to(
            self.dtype
        )
        suffix_positions = prefix_pad.sum(-1)[:, None] + torch.cumsum(suffix_pad, dim=1) - 1
        return LeRobotPrefix(
            _PiCache(cache), mask, suffix_positions, state if self.kind == "pi0" else None
        )

    def _embed_pi_suffix(self, x, timestep, state) -> _PiSuffix:
        module = _import_lerobot(self.kind)
        model = self.model
        width = model.action_in_proj.out_features
        time_embedding = module.create_sinusoidal_pos_embedding(
            timestep,
            width,
            min_period=model.config.min_period,
            max_period=model.config.max_period,
            device=timestep.device,
        ).to(self.dtype)
        actions = model.action_in_proj(x)
        if self.kind == "pi05":  # pi0.5: time conditions the expert through adaptive RMSNorm
            cond = model.time_mlp_out(torch.nn.functional.silu(model.time_mlp_in(time_embedding)))
            return _PiSuffix(actions, torch.nn.functional.silu(cond))
        fused = torch.cat([actions, time_embedding[:, None, :].expand_as(actions)], dim=2)
        action_tokens = model.action_time_mlp_out(
            torch.nn.functional.silu(model.action_time_mlp_in(fused))
        )
        state_token = model.state_proj(state.to(model.state_proj.weight.dtype)).to(self.dtype)[
            :, None, :
        ]
        return _PiSuffix(torch.cat([state_token, action_tokens], dim=1), None)


@dataclasses.dataclass(frozen=True)
class _PiSuffix:
    embeddings: torch.Tensor
    adarms_cond: torch.Tensor | None


class _PiCache(tuple):
    """The prefix KV cache as transformers' legacy tuple: ``cache[layer] -> (keys, values)``.

    openpi's patched Gemma attention reads ``past_key_value[layer_idx]`` and concatenates when
    ``use_cache`` is False, so a plain tuple of tensors serves and is copied like any context.
    """

    def __new__(cls, layers):
        return super().__new__(cls, tuple(layers))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self[layer_idx][0].shape[-2]


def _embed_actions(model, x: torch.Tensor, timestep: torch.Tensor, width: int) -> torch.Tensor:
    """SmolVLA's ``embed_suffix`` without its masks: action tokens fused with the flow time."""
    from lerobot.policies.smolvla.modeling_smolvla import create_sinusoidal_pos_embedding

    action_tokens = model.action_in_proj(x)
    time_embedding = create_sinusoidal_pos_embedding(
        timestep, width, model.config.min_period, model.config.max_period, device=x.device
    ).to(x.dtype)
    fused = torch.cat([action_tokens, time_embedding[:, None, :].expand_as(action_tokens)], dim=2)
    return model.action_time_mlp_out(torch.nn.functional.silu(model.action_time_mlp_in(fused)))


# -- building
# ----------------------------------------------------------------------------------------


def build_lerobot_policy(
    kind: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    prediction_horizon: int = 50,
    action_dim: int = 32,
    tiny: bool = False,
    action_mean: torch.Tensor | None = None,
    action_std: torch.Tensor | None = None,
) -> LeRobotFlowPolicy:
    """A LeRobot model with random weights as a FlowPolicy, on the model's own inputs.

    ``kind``: ``smolvla``, ``pi0`` or ``pi05``. ``action_dim`` is the flow's dimension (LeRobot's
    ``max_action_dim``; robot actions may have fewer, see ``action_mean``). ``tiny``: a small
    configuration for tests (SmolVLA only). Saved folders load with their processors through
    :func:`rtc_ros.policies.registry.load_policy`.
    """
    module = _import_lerobot(kind)
    device = torch.device(device)
    if kind == "smolvla":
        model = _build_smolvla(module, device, prediction_horizon, action_dim, tiny)
    else:
        if tiny:
            raise ValueError(
                "tiny=True exists for smolvla only: pi0's sizes are fixed by lerobot's variants"
            )
        model = _build_pi(kind, module, device, prediction_horizon, action_dim)
    model = model.to(device=device, dtype=dtype)
    return LeRobotFlowPolicy(kind, model, action_mean, action_std)


def _build_smolvla(module, device, prediction_horizon, action_dim, tiny):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    vlm = TINY_SMOLVLM if tiny else SMOLVLM2_500M
    size = vlm["vision_config"]["image_size"]
    config = SmolVLAConfig(
        chunk_size=prediction_horizon,
        n_action_steps=prediction_horizon,
        max_action_dim=action_dim,
        max_state_dim=action_dim,
        load_vlm_weights=False,
        device=str(device),
        num_vlm_layers=min(16, vlm["text_config"]["num_hidden_layers"]),
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (action_dim,)),
            "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, size, size)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
    )
    if tiny:
        config.tokenizer_max_length = 8
    ids = TINY_IMAGE_TOKEN_IDS if tiny else SMOLVLM2_IMAGE_TOKEN_IDS
    with offline_smolvlm(vlm, ids), torch.device(device):
        return module.VLAFlowMatching(config)


def _build_pi(kind, module, device, prediction_horizon, action_dim):
    from lerobot.configs.types import FeatureType, PolicyFeature

    config_module = importlib.import_module(f"lerobot.policies.{kind}.configuration_{kind}")
    config_class = getattr(config_module, "PI0Config" if kind == "pi0" else "PI05Config")
    config = config_class(
        chunk_size=prediction_horizon,
        n_action_steps=prediction_horizon,
        max_action_dim=action_dim,
        max_state_dim=action_dim,
        device=str(device),
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (action_dim,)),
            "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 224, 224)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
    )
    model_class = getattr(module, "PI0Pytorch" if kind == "pi0" else "PI05Pytorch")
    with torch.device(device):
        return model_class(config)


@contextlib.contextmanager
def offline_smolvlm(vlm: dict, image_token_ids: tuple[int, int]) -> Iterator[None]:
    """Let LeRobot build SmolVLA without the hub: the VLM's configuration from ``vlm`` and a
    processor stub holding the two image token ids it reads (``image_token_ids``).
    """
    from lerobot.policies.smolvla import smolvlm_with_expert as target
    from transformers import SmolVLMConfig

    class _Tokenizer:
        fake_image_token_id, global_image_token_id = image_token_ids

    class _Processor:
        tokenizer = _Tokenizer()

    class _Config:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return SmolVLMConfig(**copy.deepcopy(vlm))

    class _AutoProcessor:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            return _Processor()

    saved = target.AutoConfig, target.AutoProcessor
    target.AutoConfig, target.AutoProcessor = _Config, _AutoProcessor
    try:
        yield
    finally:
        target.AutoConfig, target.AutoProcessor = saved


__all__ = [
    "KINDS",
    "LEROBOT_VERSION",
    "LeRobotFlowPolicy",
    "LeRobotPrefix",
    "LeRobotUnavailable",
    "SMOLVLM2_500M",
    "SMOLVLM2_500M_NAME",
    "TINY_SMOLVLM",
    "build_lerobot_policy",
    "lerobot_available",
    "offline_smolvlm",
]
