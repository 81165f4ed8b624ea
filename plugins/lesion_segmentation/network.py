"""The promptable lesion network and the local window it sees (shared by the plugin, training and
the benchmark).

A click costs the same whatever the volume: the network sees a ``ROI``^3 window resampled to an
isotropic spacing chosen from the prompts (about 1.7x the lesion's extent, 0.5 to 4 mm per voxel),
aligned with the volume's own axes.  Four input channels:

    0  the image: CT as clip(HU, -1000, 1000) / 250; MR z-scored inside the window
    1  positive clicks: a Gaussian (sigma 2 window voxels) at each
    2  negative clicks: the same
    3  the previous mask (0/1 resampled)

and, for weights trained with them (``GEO_CHANNELS``; DeepIGeoS, Wang et al. 2018), two more:

    4  the geodesic distance from the positive clicks over an intensity-and-gradient cost
    5  the geodesic distance from the negative clicks and the window's border (``geodesic_maps``)

Output: one logit per voxel (sigmoid -> lesion probability).  Coordinates here are continuous
array indices ``(k, j, i)``; ``lps_to_index`` converts LPS mm through the volume's affine.
"""

from __future__ import annotations

import numpy as np

ROI = 64
CHANNELS = 4  # image, clicks, previous mask
GEO_CHANNELS = 6  # ... and the two geodesic distance maps
MIN_SPACING_MM = 0.5
MAX_SPACING_MM = 4.0
COARSE_SPACING_MM = 2.0  # the first click's first pass, before the lesion's size is known
MARGIN = 1.7  # window extent / lesion extent
CLICK_SIGMA = 2.0  # window voxels
NET_CONFIG = {"spatial_dims": 3, "in_channels": CHANNELS, "out_channels": 1, "channels": (16, 32, 64, 96, 128),
              "strides": (2, 2, 2, 2), "num_res_units": 1}


OUTPUT_NORM = True  # the shipped weights (stage 3) have the norm; train.py's stage 4 candidate does not


def build_net(output_norm: bool = OUTPUT_NORM, in_channels: int = CHANNELS):
    """MONAI's UNet; ``output_norm=False`` takes the instance norm off its single output channel.

    With residual units MONAI puts norm and activation after the top transposed convolution,
    whose output here is the one lesion channel, so every window's map was forced to mean 0 and
    SD 1 before the last 3x3x3 convolution: how much of the window is lesion could hardly follow
    the image (stage 3's weights drew a blob of about 1300 voxels around the click in every
    training window, gt 13 to 22000 voxels; with the image blanked, 1250-1320 voxels).  The norm has
    no parameters, so the state_dict keys are the same."""
    import torch
    from monai.networks.nets import UNet

    net = UNet(**{**NET_CONFIG, "in_channels": in_channels})
    if not output_norm:
        net.model[2][0].adn.N = torch.nn.Identity()  # the top up-layer: ConvTranspose -> (norm) -> PReLU
    return net


def lps_to_index(affine: np.ndarray, lps) -> np.ndarray:
    """LPS mm -> continuous ``(k, j, i)`` array index (the affine maps (i, j, k, 1) to LPS)."""
    ijk = np.linalg.solve(np.asarray(affine, np.float64), np.array([*map(float, lps), 1.0]))[:3]
    return ijk[::-1].copy()


def index_to_lps(affine: np.ndarray, kji) -> np.ndarray:
    k, j, i = map(float, kji)
    return (np.asarray(affine, np.float64) @ np.array([i, j, k, 1.0]))[:3]


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Spacing in mm along (k, j, i)."""
    a = np.asarray(affine, np.float64)
    return np.linalg.norm(a[:3, :3], axis=0)[::-1].copy()


class Window:
    """A ROI^3 isotropic window of ``spacing`` mm centred on the continuous index ``centre``."""

    def __init__(self, centre, spacing: float, vox: np.ndarray, roi: int = ROI):
        self.centre = np.asarray(centre, np.float64)
        self.spacing = float(spacing)
        self.vox = np.asarray(vox, np.float64)
        self.roi = roi
        offs = (np.arange(roi) - (roi - 1) / 2.0) * self.spacing
        self.coords = [self.centre[a] + offs / self.vox[a] for a in range(3)]  # volume index per window voxel

    def to_window(self, kji) -> np.ndarray:
        """Continuous volume index -> continuous window index."""
        return (np.asarray(kji, np.float64) - self.centre) * self.vox / self.spacing + (self.roi - 1) / 2.0

    def contains(self, kji, margin: float = 0.0) -> bool:
        w = self.to_window(kji)
        return bool(np.all(w >= -0.5 + margin) and np.all(w <= self.roi - 0.5 - margin))

    def sample(self, array: np.ndarray, smooth: bool = True) -> np.ndarray:
        """The window's values from ``array`` (trilinear, edge-replicated; anti-aliased when shrinking)."""
        lo = [max(int(np.floor(c.min())) - 2, 0) for c in self.coords]
        hi = [min(int(np.ceil(c.max())) + 3, n) for c, n in zip(self.coords, array.shape)]
        lo = [min(lo_, n - 1) for lo_, n in zip(lo, array.shape)]
        hi = [max(h, lo_ + 1) for h, lo_ in zip(hi, lo)]
        block = np.asarray(array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], np.float32)
        if smooth:
            sig = [0.4 * self.spacing / v if self.spacing / v > 1.5 else 0.0 for v in self.vox]
            if any(sig):
                from scipy import ndimage

                block = ndimage.gaussian_filter(block, sig, mode="nearest")
        out = block
        for axis in range(3):
            out = _interp_axis(out, self.coords[axis] - lo[axis], axis)
        return out

    def paste(self, win: np.ndarray, shape) -> tuple[tuple[slice, ...], np.ndarray]:
        """``win`` (ROI^3 on this window) resampled onto the volume voxels the window covers:
        (the slices of the volume, the values there)."""
        sl, local = [], []
        for a in range(3):
            c = self.coords[a]
            lo = max(int(np.ceil(c.min())), 0)
            hi = min(int(np.floor(c.max())) + 1, shape[a])
            if hi <= lo:
                return tuple(slice(0, 0) for _ in range(3)), np.zeros((0, 0, 0), np.float32)
            sl.append(slice(lo, hi))
            local.append((np.arange(lo, hi) - self.centre[a]) * self.vox[a] / self.spacing + (self.roi - 1) / 2.0)
        out = np.asarray(win, np.float32)
        for axis in range(3):
            out = _interp_axis(out, local[axis], axis)
        return tuple(sl), out


def _interp_axis(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    n = a.shape[axis]
    f = np.floor(coords)
    w = (coords - f).astype(np.float32)
    i0 = np.clip(f.astype(np.int64), 0, n - 1)
    i1 = np.clip(i0 + 1, 0, n - 1)
    shape = [1, 1, 1]
    shape[axis] = len(coords)
    w = w.reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i1, axis=axis) * w


def normalise(win: np.ndarray, modality: str) -> np.ndarray:
    if modality.upper() == "CT":
        return np.clip(win, -1000.0, 1000.0) / 250.0
    m, s = float(win.mean()), float(win.std())
    return np.clip((win - m) / max(s, 1e-6), -5.0, 5.0)


def click_map(points_win, roi: int = ROI, sigma: float = CLICK_SIGMA) -> np.ndarray:
    """Gaussians (max-combined) at window-index points; points off the window are left out."""
    out = np.zeros((roi, roi, roi), np.float32)
    r = int(np.ceil(3 * sigma))
    for p in points_win:
        c = np.rint(p).astype(int)
        if np.any(c < 0) or np.any(c >= roi):
            continue
        lo = np.maximum(c - r, 0)
        hi = np.minimum(c + r + 1, roi)
        g = [np.exp(-((np.arange(lo[a], hi[a]) - p[a]) ** 2) / (2 * sigma * sigma)) for a in range(3)]
        blob = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
        view = out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(view, blob.astype(np.float32), out=view)
    return out


def network_input(image_win: np.ndarray, modality: str, pos_win, neg_win, prev_win,
                  channels: int = CHANNELS) -> np.ndarray:
    """The (channels, ROI, ROI, ROI) input of one window (``GEO_CHANNELS``: with the geodesic maps)."""
    roi = image_win.shape[0]
    x = np.empty((channels, roi, roi, roi), np.float32)
    x[0] = normalise(image_win, modality)
    x[1] = click_map(pos_win, roi)
    x[2] = click_map(neg_win, roi)
    x[3] = 0.0 if prev_win is None else np.clip(prev_win, 0, 1)
    if channels == GEO_CHANNELS:
        x[4], x[5] = geodesic_maps(x[0], pos_win, neg_win)
    return x


GEO_PARAMS = {"alpha": 10.0, "beta": 3.0, "tol": 0.75, "smooth": 1.0}  # baselines.TUNED["geodesic"]
GEO_SCALE = 4.0  # the maps are log(1 + distance) / GEO_SCALE, clipped at 2.5


def geodesic_maps(x: np.ndarray, pos_win, neg_win, p: dict = GEO_PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """The geodesic distances (DeepIGeoS-style input channels) on the normalised window ``x``, computed
    on a half-resolution grid (two 32^3 minimum-cost-path runs, about 0.1 s) and upsampled.

    The positive clicks' cost grows with the distance of the intensity from the nearest click's own
    intensity and with the gradient; the background's (the negative clicks and the window's border)
    with the likeness to the clicked intensities, as the geodesic baseline (baselines.Geodesic)
    competes them: where the first map is below the second, that baseline says lesion."""
    from scipy import ndimage

    roi = x.shape[0]
    h = roi // 2
    xs = ndimage.gaussian_filter(x, p["smooth"]) if p["smooth"] else x
    small = xs[:2 * h, :2 * h, :2 * h].reshape(h, 2, h, 2, h, 2).mean((1, 3, 5))
    sd = float(small.std()) + 1e-6
    to_small = [np.clip((np.asarray(q, np.float64) - 0.5) / 2.0, 0, h - 1) for q in pos_win
                if np.all(np.asarray(q) >= -0.5) and np.all(np.asarray(q) <= roi - 0.5)]
    neg_small = [np.clip((np.asarray(q, np.float64) - 0.5) / 2.0, 0, h - 1) for q in neg_win
                 if np.all(np.asarray(q) >= -0.5) and np.all(np.asarray(q) <= roi - 0.5)]
    cap = 2.5
    if not to_small:
        return np.full((roi,) * 3, cap, np.float32), np.zeros((roi,) * 3, np.float32)
    fg = np.array([np.rint(q).astype(int) for q in to_small])
    ref = [float(small[tuple(c)]) for c in fg]
    d = np.min([np.abs(small - r) for r in ref], axis=0) / sd
    bg = np.zeros(small.shape, bool)
    bg[[0, -1]] = bg[:, [0, -1]] = bg[:, :, [0, -1]] = True
    for q in neg_small:
        bg[tuple(np.rint(q).astype(int))] = True
    bg[tuple(fg.T)] = False
    dist_fg, dist_bg = geodesic_distances(small, d, fg, np.argwhere(bg), p)
    out = []
    for dist in (dist_fg, dist_bg):
        m = np.minimum(np.log1p(2.0 * dist) / GEO_SCALE, cap).astype(np.float32)  # distances in full voxels
        out.append(ndimage.zoom(m, roi / h, order=1, mode="nearest", grid_mode=True))
    return out[0], out[1]


def geodesic_distances(img: np.ndarray, d: np.ndarray, fg_seeds: np.ndarray, bg_seeds: np.ndarray,
                       p: dict) -> tuple[np.ndarray, np.ndarray]:
    """The competing geodesic distances of the lesion seeds and the background seeds (index arrays)
    over ``img``: the lesion's path cost grows with ``d`` (the intensity's distance from the lesion's,
    in SDs of ``img``) and with the gradient, the background's with the likeness ``tol - d``.  Shared
    by the geodesic baseline (baselines.Geodesic: lesion where the first is below the second) and the
    network's geodesic input channels (``geodesic_maps``)."""
    from scipy import ndimage
    from skimage.graph import MCP_Geometric

    sd = float(img.std()) + 1e-6
    g = ndimage.gaussian_gradient_magnitude(img, 1.0) / sd
    a, b = float(p["alpha"]), float(p["beta"])
    dist_fg, _ = MCP_Geometric(1.0 + a * d + b * g).find_costs(fg_seeds)
    dist_bg, _ = MCP_Geometric(1.0 + a * np.maximum(0.0, float(p["tol"]) - d) + b * g).find_costs(bg_seeds)
    return dist_fg, dist_bg


def spacing_for_extent(extent_mm: float) -> float:
    return float(np.clip(extent_mm * MARGIN / ROI, MIN_SPACING_MM, MAX_SPACING_MM))
