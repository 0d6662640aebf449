"""One training loop for the three things we train: an unconditional prior, a noisy-image
classifier, and a class-conditional prior with label dropout (for classifier-free guidance).

Objectives (x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, t uniform over the schedule's T steps, or from
another noise-level distribution with a loss weighting: :mod:`.noise_levels`):
  prior        v-prediction, loss ||v_hat - v||^2 with v = sqrt(ab) eps - sqrt(1 - ab) x0
               (Salimans & Ho 2022): well scaled at every noise level, which is what restoration
               needs; the denoiser wrapper turns v into x0 at load time.
  conditional  the same, the label replaced by the null class with probability ``label_dropout``
               (Ho & Salimans 2022); the network gets K + 1 label embeddings, the last one "no class".
  classifier   cross-entropy of logits(x_t, t) against the image's class (Dhariwal & Nichol 2021).
Weights: AdamW, linear warm-up, gradient clipping, an EMA copy (what gets exported), bf16
autocast on CUDA. Checkpoints hold plain tensors and numbers (torch.load(weights_only=True)).

Settings, their checks and the checkpoint's reading and resume rules: :mod:`.settings`.
"""
from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import GuidedinvError, ModelError
from ..models.adm import ADMConfig, build_network
from ..schedule import VPSchedule
from .data import CropSampler
from .noise_levels import loss_weight, sample_timesteps
from .settings import TrainSettings, check_network, check_resume, read_checkpoint, short_reason

__all__ = ["Trainer", "TrainingDiverged"]


class TrainingDiverged(GuidedinvError):
    """The loss became NaN or infinite (usually a learning rate too high); the last checkpoint is kept."""

    exit_code = 2



class Trainer:
    """Trains ``settings.network`` (an ADMConfig dict) on ``data``; resumable from ``out_dir``."""

    def __init__(self, settings: TrainSettings, data: CropSampler, out_dir: str | Path, device: str | torch.device = "cpu"):
        if settings.crop is None:
            settings = replace(settings, crop=data.crop)
        elif settings.crop != data.crop:
            raise ValueError(f"settings.crop {settings.crop} differs from the data's crop {data.crop}")
        settings.check()
        self.settings, self.data, self.out = settings, data, Path(out_dir)
        self.device = torch.device(device)
        self.config = ADMConfig.from_dict(settings.network)
        check_network(self.config, settings.crop)
        if settings.objective == "classifier" and self.config.kind != "classifier":
            raise ValueError("a classifier objective needs a network of kind 'classifier'")
        if settings.objective != "classifier" and self.config.kind != "unet":
            raise ValueError(f"a {settings.objective} objective needs a network of kind 'unet'")
        if settings.objective != "prior" and data.labels is None:
            raise ValueError(f"the {settings.objective} objective needs labelled data")
        self.schedule = VPSchedule.named(settings.schedule)
        self.alphas_cumprod = self.schedule.alphas_cumprod.to(self.device, torch.float32)
        with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the global RNG alone
            torch.manual_seed(settings.seed)
            self.net = build_network(self.config).to(self.device)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=settings.lr, weight_decay=0.0)
        self.generator = torch.Generator().manual_seed(settings.seed)  # crops, t and noise: one stream
        self.step = 0
        self.saved_step = 0  # the step of the last checkpoint written or resumed
        self.seconds = 0.0  # wall time over all runs of this training, kept across resumes
        self.history: list[dict] = []
        self.record: dict = {}  # what the model card says of the data and machine (training.card.run_record)

    def start_from(self, weights: dict[str, torch.Tensor]) -> None:
        """Start the network and its EMA from ``weights`` (a state dict of this network: a fine-tune),
        recorded by the caller in ``settings.init``."""
        self.net.load_state_dict(weights)
        self.ema.load_state_dict(weights)

    # -- state ---------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        state = {
            "format": "guidedinv-train-1",
            "step": self.step,
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "rng": self.generator.get_state(),
            "seconds": self.seconds,
            "device": str(self.device),
            "settings": json.dumps(asdict(self.settings)),
            "card": self.record,
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)  # atomic: a kill never leaves a half-written checkpoint
        self.saved_step = self.step

    def check_resume(self, state: dict[str, Any]) -> None:
        """:func:`check_resume` of ``state`` against this run."""
        check_resume(state, self.settings, self.checkpoint_path)

    def resume(self, state: dict[str, Any] | None = None) -> bool:
        """Continue from ``out_dir/checkpoint.pt`` if it exists (or from ``state``, already read with
        :func:`read_checkpoint`); the settings must match (see the module docstring)."""
        if state is None:
            if not self.checkpoint_path.exists():
                return False
            state = read_checkpoint(self.checkpoint_path, self.device)
        self.check_resume(state)
        try:
            self.net.load_state_dict(state["net"])
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["opt"])
            self.generator.set_state(state["rng"].cpu())
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelError(f"{self.checkpoint_path}: cannot be resumed ({short_reason(exc)}); use another --out") from None
        self.step = self.saved_step = int(state["step"])
        seconds = state.get("seconds", 0.0)
        self.seconds = float(seconds) if isinstance(seconds, (int, float)) and math.isfinite(seconds) else 0.0
        return True

    # -- one step ------------------------------------------------------------------------------
    def loss(self, x0: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        s, g = self.settings, self.generator
        b = x0.shape[0]
        t = sample_timesteps(b, self.schedule.alphas_cumprod, g, noise=s.noise, mean=s.noise_mean, std=s.noise_std,
                             uniform_share=s.uniform_share).to(self.device)
        eps = torch.randn(x0.shape, generator=g).to(self.device)
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        autocast = torch.autocast("cuda", torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        with autocast:
            if s.objective == "classifier":
                return F.cross_entropy(self.net(x_t, t).float(), labels)
            if s.objective == "conditional":
                drop = torch.rand(b, generator=g).to(self.device) < s.label_dropout
                null = self.config.num_classes - 1  # the last embedding is "no class"
                labels = torch.where(drop, torch.full_like(labels, null), labels)
                out = self.net(x_t, t, labels)
            else:
                out = self.net(x_t, t)
        v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
        if s.weighting == "v":
            return F.mse_loss(out.float()[:, : x0.shape[1]], v)
        per_item = (out.float()[:, : x0.shape[1]] - v).pow(2).mean(dim=(1, 2, 3))
        return (loss_weight(ab.view(-1), s.weighting, s.sigma_data) * per_item).mean()

    def lr_at(self, step: int) -> float:
        return self.settings.lr * min(1.0, (step + 1) / max(1, self.settings.warmup))

    def train(self, progress: Callable[[int, float], None] | None = None) -> list[dict]:
        """Run until ``settings.steps``; returns the log rows (also appended to out_dir/log.jsonl)."""
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / "log.jsonl").open("a") as log:
            self._train(log, progress)
        return self.history

    def _train(self, log: Any, progress: Callable[[int, float], None] | None) -> None:
        s = self.settings
        start, base, running = time.time(), self.seconds, []
        while self.step < s.steps:
            x0, labels = self.data.batch(s.batch, self.generator)
            x0 = x0.to(self.device)
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.step)
            loss = self.loss(x0, labels)
            value = loss.item()
            if not math.isfinite(value):
                kept = f"the checkpoint of step {self.saved_step} is kept" if self.saved_step else "no checkpoint was written"
                raise TrainingDiverged(f"training diverged: the loss became {value} at step {self.step + 1} ({kept}); "
                                       f"try a smaller --lr (now {s.lr:g}) in another --out")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), s.grad_clip)
            self.opt.step()
            with torch.no_grad():
                decay = min(s.ema, (1 + self.step) / (10 + self.step))  # short runs: EMA warm-up
                for e, p in zip(self.ema.parameters(), self.net.parameters()):
                    e.lerp_(p, 1 - decay)
            self.step += 1
            self.seconds = base + time.time() - start
            running.append(value)
            if progress is not None:
                progress(self.step, running[-1])
            if self.step % s.log_every == 0 or self.step == s.steps:
                row = {"step": self.step, "loss": sum(running) / len(running), "seconds": round(self.seconds, 1)}
                self.history.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
                running = []
            if self.step % s.checkpoint_every == 0 or self.step == s.steps:
                self.save()
