"""CT denoising: the plugin code (runs in the AI worker; declared in plugin.json).

The network (network.py) sees three neighbouring slices and a noise level, and removes the
noise of the centre slice.  By default (``dose`` 0, blind) the noise level is measured on each
slice of the image itself (noise.py); a ``dose`` in (0, 1] overrides it: the fraction of a normal
dose the input was taken at, 0.25 for a quarter-dose scan, lower values removing more.  A single
slice (or the edge of a thin slab) has its missing neighbours filled in: replicated at a slab's
edges, a lightly smoothed copy of the slice itself when there is only one.  ``ensemble`` views
(rotations and mirrorings of the input, the outputs turned back and averaged; 0, the default, means
all 8 on a slab of up to 8 slices and, on a volume, as many as fit in the work of two views of the
512x512x141 chest CT, ENSEMBLE_VOXELS, at least ENSEMBLE_VOLUME: ``default_views``) trade time for a
little less noise (bench_denoise.py images, blind: 8 views against 1 gave +0.06 to +0.54 dB on lone
slices, 2 and 4 views +0.18 and +0.25 dB on the held-out volume; on the training volumes' monitoring
slices, never trained on, 8 views against 2 gave +0.10 dB; the held-out volume, 164x126x120, gets 8: +0.09 dB
over 2 in the 1.5.1 bench).
The heatmap is the removed noise in HU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.ai.api import DerivedImage, Heatmap, Results

WEIGHTS = Path(__file__).resolve().parent / "weights.pt"
HEATMAP_FULL_SCALE_HU = 50.0  # removed noise of this many HU (local RMS) shows as 1.0
HEATMAP_SIGMA_PX = 2.0  # in-plane Gaussian over which the removed signal's RMS is taken
# self-ensemble: the network runs on several rotations/mirrorings of the input and the outputs (turned back)
# are averaged; the first n of this order are used (each pair differs in both rotation and mirroring)
VIEWS = ((0, False), (2, True), (1, False), (3, True), (0, True), (2, False), (1, True), (3, False))
ENSEMBLE_MAX_SLICES = 8  # volumes this thin are denoised in all 8 orientations by default (``ensemble`` 0)
ENSEMBLE_VOLUME = 2  # the fewest views on a thicker volume by default
# the work a volume gets by default, in voxels x views: two views of the 512x512x141 chest CT (well under 60 s on
# 2 CPU cores), so smaller volumes get more views (up to 8) in no more time and larger ones ENSEMBLE_VOLUME
ENSEMBLE_VOXELS = 2 * 512 * 512 * 141
SINGLE_SLICE_SIGMA_PX = 0.7  # neighbours of a lone slice: it smoothed this much (better than a plain copy)
# slices per network call on the CPU: 8 of 512x512, more of smaller ones (up to 64): on a busy 2-core CPU small calls
# lose most of their time in the threads' hand-offs (the 164x126x120 held-out CT with 8 views: 41-66 s in batches
# of 8, 21 s in batches of 64, as long as the same voxels x views of the chest CT in 512x512 batches of 8)
CPU_BATCH_VOXELS = 8 * 512 * 512
CPU_BATCH_MAX = 64


def default_views(shape: tuple[int, int, int]) -> int:
    """The views ``ensemble`` 0 averages on a [k, j, i] volume of ``shape``."""
    depth, rows, cols = shape
    if depth <= ENSEMBLE_MAX_SLICES:
        return len(VIEWS)
    return int(min(max(ENSEMBLE_VOXELS // max(depth * rows * cols, 1), ENSEMBLE_VOLUME), len(VIEWS)))


def removed_map(hu: np.ndarray, out: np.ndarray) -> np.ndarray:
    """What the network took away, as a [0, 1] map: the local RMS of ``hu - out`` per slice.

    Plain |hu - out| is speckle wherever there was noise; its local RMS is smooth where only noise
    went and peaks where the network changed anatomy (edges, small structures): what a reader
    should check."""
    from scipy import ndimage

    heat = np.empty(out.shape, np.float32)
    for k in range(out.shape[0]):
        d = np.asarray(hu[k], np.float32) - out[k]
        heat[k] = np.sqrt(ndimage.gaussian_filter(d * d, HEATMAP_SIGMA_PX)) / HEATMAP_FULL_SCALE_HU
    return np.clip(heat, 0.0, 1.0, out=heat)


class CTDenoiser:
    def __init__(self, weights: Path | None = None):
        self._weights = WEIGHTS if weights is None else Path(weights)
        self._net = None
        self._device = None

    def _model(self, device: str):
        import torch

        from plugins.ct_denoising.network import DenoiseNet
        from viewer.ai.models import load_state_dict

        if self._net is None:
            # weights_only loading: no pickled code runs; the shape is read off the tensors
            self._net = DenoiseNet.from_state_dict(load_state_dict(self._weights)).eval()
        if self._device != device:
            fmt = torch.channels_last if device == "cpu" else torch.contiguous_format
            self._net = self._net.to(device=device, memory_format=fmt)
            self._device = device
        return self._net

    def run(self, inputs, params, context) -> Results:
        from plugins.ct_denoising.network import dose_channel_value
        from plugins.ct_denoising.noise import condition_from_noise, equivalent_dose, volume_noise_hu

        vol = inputs["image"]
        dose = float(params.get("dose", 0.0) or 0.0)
        hu = vol.real_values()
        depth, rows, cols = hu.shape
        n_views = int(params.get("ensemble", 0) or 0)
        if n_views <= 0:
            n_views = default_views(hu.shape)
        views = VIEWS[:min(n_views, len(VIEWS))]
        used_dose = f"{dose:g}"
        if dose > 0:
            cond = np.full(depth, dose_channel_value(dose), np.float32)
            label, how = f"dose {dose:g}", f"at an assumed dose fraction of {dose:g}"
        else:
            context.progress(0.0, "measuring the noise")
            sigma = volume_noise_hu(hu)
            if not np.isfinite(sigma).all():  # no soft tissue anywhere: assume quarter dose
                cond = np.full(depth, dose_channel_value(0.25), np.float32)
                label, how = "blind", "with the noise level of a quarter dose (no soft tissue to measure it on)"
                used_dose = "0.25 (no soft tissue to measure the noise on)"
            else:
                cond = condition_from_noise(sigma).astype(np.float32)
                med = float(np.median(sigma))
                label = f"blind, noise {med:.0f} HU"
                used_dose = f"measured, noise {med:.0f} HU"
                how = (f"at the noise measured on the image (median {med:.1f} HU per slice, like a dose "
                       f"fraction of {equivalent_dose(float(np.median(cond))):.2f} for the network)")
        net = self._model(context.device)
        pad_r, pad_c = (-rows) % 4, (-cols) % 4
        on_cuda = context.device.startswith("cuda")
        batch = 32 if on_cuda else int(min(max(CPU_BATCH_VOXELS // (rows * cols), 8), CPU_BATCH_MAX))
        out = np.empty(hu.shape, np.int16)
        context.progress(0.0, "denoising")
        # Cancel is also checked inside the network (between its stages), so a press of Cancel
        # stops the run within a fraction of a batch rather than after it
        hooks = [m.register_forward_pre_hook(lambda *_: context.check_cancelled())
                 for m in (net.enc, net.mid, net.dec)]
        try:
            self._denoise(net, hu, out, batch, cond, pad_r, pad_c, on_cuda, context, views)
        finally:
            for h in hooks:
                h.remove()
        results = Results(images=[DerivedImage(out, vol.affine.copy(), f"Denoised ({label})", "CT", "HU",
                                               f"CT denoising {how}.")])
        if params.get("heatmap", True):
            results.heatmaps.append(Heatmap(removed_map(hu, out), vol.affine.copy(), "Removed noise", "removed-noise",
                                            f"Local RMS of input - denoised (Gaussian {HEATMAP_SIGMA_PX:g} px); "
                                            f"1.0 = {HEATMAP_FULL_SCALE_HU:g} HU or more removed.  Bright edges or "
                                            "shapes mean structure, not only noise, was taken away.",
                                            unit="HU", full_scale=HEATMAP_FULL_SCALE_HU))
        results.provenance["effective_parameters"] = {"dose": used_dose, "ensemble": len(views)}
        return results

    @staticmethod
    def _denoise(net, hu, out, batch, cond, pad_r, pad_c, on_cuda, context, views) -> None:
        import torch

        from plugins.ct_denoising.network import HU_SCALE

        depth, rows, cols = hu.shape
        slices = net.slices
        half = slices // 2
        for k0 in range(0, depth, batch):
            context.check_cancelled()
            k1 = min(k0 + batch, depth)
            idx = np.clip(np.arange(k0 - half, k1 + half), 0, depth - 1)
            block = np.clip(np.asarray(hu[idx], np.float32), -1024, 3071) / HU_SCALE
            if depth == 1 and slices > 1:  # a lone slice: its neighbours are a lightly smoothed copy of it
                from scipy import ndimage

                smooth = ndimage.gaussian_filter(block[half], SINGLE_SLICE_SIGMA_PX)
                block[:half] = smooth
                block[half + 1:] = smooth
            if pad_r or pad_c:
                block = np.pad(block, ((0, 0), (0, pad_r), (0, pad_c)), mode="reflect")
            stack = np.lib.stride_tricks.sliding_window_view(block, slices, axis=0)  # (n, H, W, slices)
            x = np.empty((k1 - k0, slices + 1, *block.shape[1:]), np.float32)
            x[:, :slices] = np.moveaxis(stack, -1, 1)
            x[:, slices] = cond[k0:k1, None, None]
            xt = torch.from_numpy(x).to(context.device)
            y = 0
            for r, f in views:
                xv = torch.rot90(xt, r, (2, 3)) if r else xt
                xv = torch.flip(xv, (3,)) if f else xv
                xv = xv.contiguous() if on_cuda else xv.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), context.autocast():
                    yv = net(xv).float()
                yv = torch.flip(yv, (3,)) if f else yv
                y = y + (torch.rot90(yv, -r, (2, 3)) if r else yv)
            y = y / len(views)
            y = y[:, 0, :rows, :cols].cpu().numpy() * HU_SCALE
            out[k0:k1] = np.clip(np.rint(y), -1024, 32767).astype(np.int16)
            context.progress(k1 / depth, "denoising")
