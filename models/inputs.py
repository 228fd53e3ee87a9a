"""Input codes z of the Deep Image Prior (Ulyanov et al. 2018, Sec. 3; Shi et al. 2022, Sec. 5).

- ``noise``: uniform[0, 1) · var (DIP's default, var = 1/10).
- ``fourier``: C/2 channels u ~ uniform[0, 1) · var, returned as ``cat(sin 2πu, cos 2πu)``
  (the spectral-bias paper's input: 32 channels, var 1).
- ``meshgrid``: 2 channels holding normalised x and y coordinates in [0, 1].
"""
from __future__ import annotations

import math

import torch

INPUTS = ("fourier", "noise", "meshgrid")


def make_input(kind: str, channels: int, height: int, width: int, var: float = 0.1,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Return the code z as a (1, channels, height, width) float32 tensor on the CPU."""
    if kind == "noise":
        return torch.rand(1, channels, height, width, generator=generator) * var
    if kind == "fourier":
        if channels % 2:
            raise ValueError(f"fourier input needs an even number of channels, got {channels}")
        u = torch.rand(1, channels // 2, height, width, generator=generator) * var
        return torch.cat([torch.sin(2 * math.pi * u), torch.cos(2 * math.pi * u)], 1)
    if kind == "meshgrid":
        if channels != 2:
            raise ValueError(f"meshgrid input has 2 channels, got {channels}")
        y = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
        x = torch.linspace(0, 1, width).view(1, width).expand(height, width)
        return torch.stack([x, y])[None].contiguous()
    raise ValueError(f"unknown input kind {kind!r} ({' | '.join(INPUTS)})")
