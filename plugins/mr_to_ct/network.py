"""A small 2.5D U-Net for MR-to-CT: three neighbouring slices of normalised MR in, the centre
slice's HU / 1000 out.  Trained by ``train.py`` on a site's own pairs and saved as TorchScript
(``<models folder>/mr-to-ct/model.ts``), which the plugin runs when it is there.

The TorchScript file carries what the plugin needs to feed it: ``slices`` (3), ``spacing_mm``
(the isotropic grid it was trained on) and ``hu_scale`` (1000).  The MR is normalised as the
atlas method does (``atlas.normalise``: 0 the background, 1 the 99th percentile inside the head).
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.InstanceNorm2d(cout, affine=True),
                         nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(cout, cout, 3, padding=1),
                         nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.1, inplace=True))


class SynthNet(nn.Module):
    """U-Net, three levels: ``width``, 2x, 4x channels; input sides must be multiples of 4."""

    def __init__(self, slices: int = 3, width: int = 16, spacing_mm: float = 2.0, hu_scale: float = 1000.0):
        super().__init__()
        self.slices = slices
        self.spacing_mm = float(spacing_mm)
        self.hu_scale = float(hu_scale)
        self.enc1 = _block(slices, width)
        self.enc2 = _block(width, 2 * width)
        self.mid = _block(2 * width, 4 * width)
        self.up2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.dec2 = _block(4 * width, 2 * width)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec1 = _block(2 * width, width)
        self.head = nn.Conv2d(width, 1, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)
