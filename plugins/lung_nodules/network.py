"""The nodule detector's network: a small 3D U-Net that maps CT (on the 2 x 1 x 1 mm grid) to a
per-voxel nodule objectness logit.

The first pooling halves only the in-plane axes, so from the second level on the features are on
an isotropic 2 mm grid; three levels down the receptive field covers about 70 mm, enough to tell
a 30 mm nodule from a vessel.  About 0.17 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

GRID_MM = (2.0, 1.0, 1.0)  # (k, j, i) spacing the network works on
HU_LO, HU_HI = -1000.0, 400.0
MULTIPLE = (4, 8, 8)  # input sizes must be multiples of these


def normalise(hu):
    """HU (numpy or torch) to the network's input range (about -1 to 1)."""
    if isinstance(hu, torch.Tensor):
        return (hu.clamp(HU_LO, HU_HI) + 300.0) / 700.0
    import numpy as np

    return (np.clip(hu, HU_LO, HU_HI).astype(np.float32) + 300.0) / 700.0


def _block(cin, cout):
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.LeakyReLU(0.1, True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.LeakyReLU(0.1, True),
    )


class NoduleNet(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        w = width
        self.width = w
        self.enc0 = _block(1, w)
        self.enc1 = _block(w, 2 * w)
        self.enc2 = _block(2 * w, 4 * w)
        self.mid = _block(4 * w, 4 * w)
        self.pool0 = nn.MaxPool3d((1, 2, 2))
        self.pool = nn.MaxPool3d(2)
        self.up2 = nn.ConvTranspose3d(4 * w, 4 * w, 2, stride=2)
        self.dec2 = _block(8 * w, 2 * w)
        self.up1 = nn.ConvTranspose3d(2 * w, 2 * w, 2, stride=2)
        self.dec1 = _block(4 * w, w)
        self.up0 = nn.ConvTranspose3d(w, w, (1, 2, 2), stride=(1, 2, 2))
        self.dec0 = _block(2 * w, w)
        self.head = nn.Conv3d(w, 1, 1)
        nn.init.constant_(self.head.bias, -4.0)  # start near "no nodule" (rare positives)

    def forward(self, x):
        e0 = self.enc0(x)
        e1 = self.enc1(self.pool0(e0))
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        d0 = self.dec0(torch.cat([self.up0(d1), e0], 1))
        return self.head(d0)

    @classmethod
    def from_state_dict(cls, state: dict) -> NoduleNet:
        net = cls(width=int(state["enc0.0.weight"].shape[0]))
        net.load_state_dict(state)
        return net
