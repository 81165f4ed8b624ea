"""The denoising network: a small residual 2.5D U-Net (torch only; imported in the AI worker).

Input ``(B, 4, H, W)``: three neighbouring slices (k-1, k, k+1) in HU/1000 and one constant
channel giving the noise to remove, ``sqrt(1/dose - 1) / sqrt(3)`` (1 at quarter dose, 0 at full
dose).  The network works at half resolution after a lossless pixel-unshuffle (as FFDNet does),
with one more level at quarter resolution, and predicts the noise of the centre slice, which it
subtracts: output = centre - noise.  About 0.19 M parameters, about 17 k multiply-adds per voxel,
so a 512x512x141 CT runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SLICES = 3
HU_SCALE = 1000.0


def dose_channel_value(dose: float) -> float:
    """Conditioning value for a dose fraction in (0, 1]: 0 at full dose, 1 at quarter dose."""
    dose = min(max(float(dose), 1e-3), 1.0)
    return math.sqrt(1.0 / dose - 1.0) / math.sqrt(3.0)


def _conv(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class DenoiseNet(nn.Module):
    def __init__(self, c1: int = 32, c2: int = 64, mid_layers: int = 4, slices: int = SLICES):
        super().__init__()
        self.slices = slices
        cin = (slices + 1) * 4
        self.unshuffle = nn.PixelUnshuffle(2)
        self.enc = nn.Sequential(_conv(cin, c1), _conv(c1, c1))
        self.down = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True))
        self.mid = nn.Sequential(*[_conv(c2, c2) for _ in range(mid_layers)])
        self.up = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec = _conv(c1, c1)
        self.out = nn.Conv2d(c1, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    @classmethod
    def from_state_dict(cls, state: dict) -> DenoiseNet:
        """A network shaped to fit ``state`` (widths, depth and slice count read off the tensors)."""
        first = state["enc.0.0.weight"]
        mid = len({k.split(".")[1] for k in state if k.startswith("mid.")})
        net = cls(c1=first.shape[0], c2=state["down.0.weight"].shape[0], mid_layers=mid,
                  slices=first.shape[1] // 4 - 1)
        net.load_state_dict(state)
        return net

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The noise the network sees in the centre slice (same units as ``x``); H, W divisible by 4."""
        h = self.enc(self.unshuffle(x))
        m = self.mid(self.down(h))
        d = self.dec(self.up(m) + h)
        return self.shuffle(self.out(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.slices // 2
        return x[:, c:c + 1] - self.noise(x)
