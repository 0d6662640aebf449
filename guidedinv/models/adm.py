"""The ADM UNet and its noisy classifier (Dhariwal & Nichol 2021, "Diffusion models beat GANs"),
written from the published architecture so that the released guided-diffusion, DPS and ILVR
checkpoints load by their own state-dict keys (no prefix, no renaming).

Symbols: mc = model_channels, E = 4 mc (the timestep-embedding width), ds = downsample factor of a
level (1, 2, 4, ...). Attention is placed by ds, not by absolute resolution, so the networks are
fully convolutional: any input whose sides are divisible by 2^(levels - 1) works.

The layers and their numerics (embedding order, GroupNorm precision, scale-shift, qkv channel
orders) are in :mod:`guidedinv.models.adm_layers`. Skips are concatenated as [current features,
popped skip] along channels; the output is cast back to the input's dtype before ``out``.

Reduced precision follows guided-diffusion's ``convert_to_fp16``: only the convolutions inside
``input_blocks``, ``middle_block`` and ``output_blocks`` change dtype (see :meth:`convert_to`);
embeddings, norms and the output head stay float32.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from .adm_layers import (
    AttentionBlock,
    AttentionOrder,
    AttentionPool2d,
    Downsample,
    EmbedSequential,
    GroupNorm32,
    ResBlock,
    Upsample,
    timestep_embedding,
    zero_init,
)

__all__ = ["ADMConfig", "ADMBase", "ADMUNet", "ADMClassifier", "build_network", "timestep_embedding"]


@dataclass(frozen=True)
class ADMConfig:
    """Everything that defines an ADM network.

    kind: "unet" (denoiser, output 2C channels with learned sigma) or "classifier" (encoder + pool).
    channel_mult: per level; channels are int(mult * model_channels) (0.5 occurs at 512 px).
    attention_ds: downsample factors with self-attention (attention resolution r at image size S is
        ds = S // r). The middle block always has attention.
    head_channels: width per attention head; when set it overrides num_heads (guided-diffusion's
        num_head_channels). num_heads_upsample: heads on the decoder side when head_channels is None.
    attention_order: "legacy" or "new" qkv channel layout (not visible in shapes).
    pool / image_size: classifier only. The attention pool has a positional embedding for an
        (image_size / 2^(levels-1))^2 grid, so it fixes the input size; "adaptive" (global average
        then 1x1 conv) does not.
    conv_resample: plain (non-ResBlock) resampling uses a 3x3 conv ("op" / "conv" keys).
    """

    model_channels: int
    num_res_blocks: int
    channel_mult: tuple[float, ...]
    attention_ds: tuple[int, ...]
    kind: Literal["unet", "classifier"] = "unet"
    in_channels: int = 3
    out_channels: int = 6
    num_classes: int = 0
    num_heads: int = 1
    head_channels: int | None = 64
    num_heads_upsample: int | None = None
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    conv_resample: bool = True
    attention_order: AttentionOrder = "legacy"
    dropout: float = 0.0
    pool: Literal["attention", "adaptive"] = "attention"
    image_size: int | None = None

    def __post_init__(self) -> None:
        mult = tuple(int(m) if float(m).is_integer() else float(m) for m in self.channel_mult)
        object.__setattr__(self, "channel_mult", mult)
        object.__setattr__(self, "attention_ds", tuple(sorted(int(d) for d in self.attention_ds)))
        if self.kind not in ("unet", "classifier"):
            raise ValueError(f"kind must be 'unet' or 'classifier', got {self.kind!r}")
        if self.attention_order not in ("legacy", "new"):
            raise ValueError(f"attention_order must be 'legacy' or 'new', got {self.attention_order!r}")
        if self.pool not in ("attention", "adaptive"):
            raise ValueError(f"pool must be 'attention' or 'adaptive', got {self.pool!r}")
        if self.kind == "classifier" and self.pool == "attention":
            if self.image_size is None or self.head_channels is None:
                raise ValueError("an attention-pool classifier needs image_size and head_channels")
        if self.num_res_blocks < 1 or not self.channel_mult:
            raise ValueError("num_res_blocks must be >= 1 and channel_mult non-empty")

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def learned_sigma(self) -> bool:
        return self.kind == "unet" and self.out_channels == 2 * self.in_channels

    def channels(self, level: int) -> int:
        return int(self.channel_mult[level] * self.model_channels)

    def heads(self, channels: int, upsample: bool = False) -> int:
        """Number of attention heads at a block of ``channels`` channels (guided-diffusion's rule)."""
        if self.head_channels is not None:
            if channels % self.head_channels:
                raise ValueError(f"attention width {channels} is not divisible by head_channels {self.head_channels}")
            return channels // self.head_channels
        if upsample and self.num_heads_upsample is not None:
            return self.num_heads_upsample
        return self.num_heads

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_ds"] = list(self.attention_ds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ADMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ADM config fields: {sorted(unknown)}")
        d = dict(d)
        d["channel_mult"] = tuple(d["channel_mult"])
        d["attention_ds"] = tuple(d["attention_ds"])
        return cls(**d)


SHAPE_FIELDS = (
    "kind",
    "model_channels",
    "num_res_blocks",
    "channel_mult",
    "attention_ds",
    "in_channels",
    "out_channels",
    "num_classes",
    "use_scale_shift_norm",
    "resblock_updown",
    "conv_resample",
    "pool",
)


class ADMBase(nn.Module):
    """The shared encoder: time embedding, input blocks, middle block."""

    def __init__(self, cfg: ADMConfig) -> None:
        super().__init__()
        self.config = cfg
        mc, emb = cfg.model_channels, 4 * cfg.model_channels
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        if cfg.num_classes:
            self.label_emb = nn.Embedding(cfg.num_classes, emb)

        res = self._resblock
        ch = cfg.channels(0)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        self.skip_channels = [ch]
        ds = 1
        for level in range(cfg.levels):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, cfg.channels(level))]
                ch = cfg.channels(level)
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, cfg.heads(ch), cfg.attention_order))
                self.input_blocks.append(EmbedSequential(*layers))
                self.skip_channels.append(ch)
            if level != cfg.levels - 1:
                down = res(ch, resample="down") if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)
                self.input_blocks.append(EmbedSequential(down))
                self.skip_channels.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(res(ch), AttentionBlock(ch, cfg.heads(ch), cfg.attention_order), res(ch))
        self.feature_channels = ch
        self.max_ds = ds

    def _resblock(self, cin: int, cout: int | None = None, resample: Literal["up", "down"] | None = None) -> ResBlock:
        cfg = self.config
        return ResBlock(cin, 4 * cfg.model_channels, cout, cfg.use_scale_shift_norm, cfg.dropout, resample)

    def embed(self, timesteps: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
        t = torch.as_tensor(timesteps, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"timesteps must have shape ({batch},), got {tuple(t.shape)}")
        emb = timestep_embedding(t, self.config.model_channels)
        return self.time_embed(emb.to(self.time_embed[0].weight.dtype))  # a no-op unless run in float64

    def check_size(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.max_ds or x.shape[-1] % self.max_ds:
            raise ValueError(f"image sides must be divisible by {self.max_ds}, got {x.shape[-2]}x{x.shape[-1]}")

    torso = ("input_blocks", "middle_block")  # what reduced precision converts (guided-diffusion's "torso")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype activations run in through the torso (that of its convolutions)."""
        return self.input_blocks[0][0].weight.dtype

    def reduced_precision_keys(self) -> set[str]:
        """State-dict keys that :meth:`convert_to` casts: conv weights and biases in the torso."""
        keys = set()
        for part in self.torso:
            for name, module in getattr(self, part).named_modules():
                if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                    keys.update(f"{part}.{name}.{p}" for p, _ in module.named_parameters(recurse=False))
        return keys

    def convert_to(self, dtype: torch.dtype) -> ADMBase:
        """Run the torso's convolutions in ``dtype`` (float16/bfloat16), the rest in float32."""
        for part in self.torso:
            for module in getattr(self, part).modules():
                if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                    module.to(dtype)
        return self


class ADMUNet(ADMBase):
    """The ADM UNet. Call as ``net(x, timesteps)`` or ``net(x, timesteps, y)`` (class-conditional).

    x: (B, in_channels, H, W) in [-1, 1], H and W divisible by 2^(levels-1); timesteps: (B,) the
    network's own integer timesteps (fractional allowed); y: (B,) class indices. Returns
    (B, out_channels, H, W): eps, followed by the learned-range variance channels when
    ``config.learned_sigma``.
    """

    def __init__(self, cfg: ADMConfig) -> None:
        if cfg.kind != "unet":
            raise ValueError("ADMUNet needs a config of kind 'unet'")
        super().__init__(cfg)
        res, ch, ds = self._resblock, self.feature_channels, self.max_ds
        skips = list(self.skip_channels)
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(cfg.levels)):
            for i in range(cfg.num_res_blocks + 1):
                layers: list[nn.Module] = [res(ch + skips.pop(), cfg.channels(level))]
                ch = cfg.channels(level)
                if ds in cfg.attention_ds:
                    layers.append(AttentionBlock(ch, cfg.heads(ch, upsample=True), cfg.attention_order))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, resample="up") if cfg.resblock_updown else Upsample(ch, cfg.conv_resample))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, cfg.out_channels, 3, padding=1)))

    torso = ("input_blocks", "middle_block", "output_blocks")

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_size(x)
        emb = self.embed(timesteps, x.shape[0], x.device)
        if self.config.num_classes:
            if y is None:
                raise ValueError("this network is class-conditional: pass class labels y of shape (B,)")
            emb = emb + self.label_emb(y.to(x.device).long())
        elif y is not None:
            raise ValueError("this network is unconditional: do not pass class labels")
        hs = []
        h = x.to(self.dtype)
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.to(x.dtype))


class ADMClassifier(ADMBase):
    """The noisy-image classifier (guided-diffusion's EncoderUNetModel). Call as ``net(x, timesteps)``;
    returns logits (B, out_channels). With the attention pool the input must be ``config.image_size``."""

    def __init__(self, cfg: ADMConfig) -> None:
        if cfg.kind != "classifier":
            raise ValueError("ADMClassifier needs a config of kind 'classifier'")
        super().__init__(cfg)
        ch = self.feature_channels
        if cfg.pool == "attention":
            assert cfg.image_size is not None and cfg.head_channels is not None
            pool: nn.Module = AttentionPool2d(cfg.image_size // self.max_ds, ch, cfg.head_channels, cfg.out_channels)
            self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), pool)
        else:
            conv = zero_init(nn.Conv2d(ch, cfg.out_channels, 1))
            self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.AdaptiveAvgPool2d(1), conv, nn.Flatten())

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float) -> torch.Tensor:
        self.check_size(x)
        emb = self.embed(timesteps, x.shape[0], x.device)
        h = x.to(self.dtype)
        for block in self.input_blocks:
            h = block(h, emb)
        h = self.middle_block(h, emb)
        return self.out(h.to(x.dtype))


def build_network(cfg: ADMConfig, device: torch.device | str | None = None) -> ADMUNet | ADMClassifier:
    """The module for ``cfg``. ``device="meta"`` builds it without allocating any weights."""
    with torch.device(device) if device is not None else nullcontext():
        return ADMUNet(cfg) if cfg.kind == "unet" else ADMClassifier(cfg)
