"""The steps syntax, parsed once: guided-diffusion's respacing ("250", "10,10,10", "ddim25") or ours
("logsnrN", N steps evenly spaced in log-SNR). Every model this package loads has T = 1000
timesteps (linear and cosine schedules), so a grid is checked completely before any model loads.

A run makes one network forward call per reverse step; ``Steps.count`` is that number (a warm start
below the grid's top runs the grid's part below it; a logsnr grid is laid out below it instead).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["Steps", "parse_steps", "NUM_TIMESTEPS"]

NUM_TIMESTEPS = 1000
_FORMS = re.compile(r"^(?:(logsnr|ddim)(\d+)|(\d+(?:,\d+)*))$")


@dataclass(frozen=True)
class Steps:
    """A parsed grid: ``kind`` is "respace" ("N" / "N1,N2,..."), "ddim" or "logsnr"; ``text`` the
    canonical string handed to the sampler; ``count`` its network evaluations from pure noise."""

    kind: str
    counts: tuple[int, ...]
    text: str

    @property
    def count(self) -> int:
        return sum(self.counts)

    def with_count(self, n: int) -> Steps:
        """The same kind of grid with ``n`` steps (a sectioned respacing becomes one section)."""
        prefix = {"respace": "", "ddim": "ddim", "logsnr": "logsnr"}[self.kind]
        return parse_steps(f"{prefix}{int(n)}", "budget")


def parse_steps(value: str | int, where: str = "--steps") -> Steps:
    """Parse and check a grid; an InputError names ``where`` and what is accepted."""
    text = str(value).strip().lower().replace(" ", "")
    m = _FORMS.match(text)
    accepted = ('expected "N" (1..1000 steps, guided-diffusion respacing), "N1,N2,..." (sections), '
                '"ddimN" or "logsnrN" (2..1000)')
    if isinstance(value, bool) or m is None:
        raise InputError(f"{where} {value!r}: {accepted}")
    if m.group(1) == "logsnr":
        n = int(m.group(2))
        if not 2 <= n <= NUM_TIMESTEPS:
            raise InputError(f"{where} {value!r}: logsnrN needs 2 <= N <= {NUM_TIMESTEPS}")
        return Steps("logsnr", (n,), f"logsnr{n}")
    from ..schedule import respace  # the exact rule (guided-diffusion's), checked on T = 1000

    canonical = f"ddim{int(m.group(2))}" if m.group(1) == "ddim" else ",".join(str(int(c)) for c in m.group(3).split(","))
    counts = (int(m.group(2)),) if m.group(1) == "ddim" else tuple(int(c) for c in m.group(3).split(","))
    if min(counts) < 1:
        raise InputError(f"{where} {value!r}: every count must be at least 1")
    try:
        grid = respace(canonical, NUM_TIMESTEPS)
    except ValueError as exc:
        raise InputError(f"{where} {value!r}: {exc} (T = {NUM_TIMESTEPS})") from None
    return Steps("ddim" if m.group(1) else "respace", (len(grid),), canonical)
