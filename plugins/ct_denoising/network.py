"""The denoising network: a small residual 2.5D U-Net (torch only; imported in the AI worker).

Input ``(B, 4, H, W)``: three neighbouring slices (k-1, k, k+1) in HU/1000 and one constant
channel giving the noise to remove, ``sqrt(1/dose - 1) / sqrt(3)`` (1 at quarter dose, 0 at full
dose).  The network works at half resolution after a lossless pixel-unshuffle (as FFDNet does),
with one more level at quarter resolution, and predicts the noise of the centre slice, which it
subtracts: output = centre - noise.  1.1.0-1.4.0: about 0.19 M parameters, about 17 k multiply-adds per
voxel; 1.5.0 adds two residual blocks at quarter resolution (0.35 M parameters, about 26 k multiply-adds per
voxel, 1.3 times the time), so a 512x512x141 CT runs in well under a minute on two CPU cores.
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


class ResBlock(nn.Module):
    """conv - LeakyReLU - conv, added to its input; ``zero_init`` starts it as the identity (a network
    grown by such blocks computes exactly what it did before, so training can start from its weights)."""

    def __init__(self, c: int, zero_init: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1))
        if zero_init:
            nn.init.zeros_(self.body[2].weight)
            nn.init.zeros_(self.body[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DenoiseNet(nn.Module):
    def __init__(self, c1: int = 32, c2: int = 64, mid_layers: int = 4, slices: int = SLICES, res_blocks: int = 0):
        super().__init__()
        self.slices = slices
        cin = (slices + 1) * 4
        self.unshuffle = nn.PixelUnshuffle(2)
        self.enc = nn.Sequential(_conv(cin, c1), _conv(c1, c1))
        self.down = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True))
        self.mid = nn.Sequential(*[_conv(c2, c2) for _ in range(mid_layers)])
        # optional residual blocks after ``mid`` at quarter resolution (absent from 1.1.0-1.4.0's weights)
        self.res = nn.Sequential(*[ResBlock(c2) for _ in range(res_blocks)]) if res_blocks else None
        self.up = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec = _conv(c1, c1)
        self.out = nn.Conv2d(c1, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def grow(self, res_blocks: int) -> DenoiseNet:
        """Append ``res_blocks`` identity-initialised residual blocks (the output is unchanged until trained)."""
        c2 = self.down[0].out_channels
        blocks = list(self.res) if self.res is not None else []
        self.res = nn.Sequential(*blocks, *[ResBlock(c2, zero_init=True) for _ in range(res_blocks)])
        return self

    @classmethod
    def from_state_dict(cls, state: dict) -> DenoiseNet:
        """A network shaped to fit ``state`` (widths, depth and slice count read off the tensors)."""
        first = state["enc.0.0.weight"]
        mid = len({k.split(".")[1] for k in state if k.startswith("mid.")})
        res = len({k.split(".")[1] for k in state if k.startswith("res.")})
        net = cls(c1=first.shape[0], c2=state["down.0.weight"].shape[0], mid_layers=mid,
                  slices=first.shape[1] // 4 - 1, res_blocks=res)
        net.load_state_dict(state)
        return net

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The noise the network sees in the centre slice (same units as ``x``); H, W divisible by 4."""
        h = self.enc(self.unshuffle(x))
        m = self.mid(self.down(h))
        if self.res is not None:
            m = self.res(m)
        d = self.dec(self.up(m) + h)
        return self.shuffle(self.out(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.slices // 2
        return x[:, c:c + 1] - self.noise(x)
