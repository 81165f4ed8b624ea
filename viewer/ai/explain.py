"""Ready explainers for plugins (worker side): why did the model decide what it decided?

* ``probability``: the model's own probability for a class (no extra cost);
* ``gradcam``: MONAI's GradCAM on a layer of the network (nn.Module models; TorchScript modules
  do not support the hooks it needs);
* ``occlusion``: MONAI's occlusion sensitivity: how much the class score falls when a region
  is blurred away (any model; costly, so run on a region of interest);
* ``removed_noise``: for image-to-image models, what the model took away.

All return float32 arrays in [0, 1] on the input grid; ``heatmap`` wraps one as a ``Heatmap``.
Segmentation networks output a map per class; for GradCAM and occlusion they are wrapped so the
class score is the mean of that class's logit over the window (``ClassScores``).
"""

from __future__ import annotations

import numpy as np

from viewer.ai.api import Heatmap
from viewer.core.volume import Volume


def normalize(array, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    a = np.nan_to_num(np.asarray(array, dtype=np.float32))
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros_like(a, dtype=np.float32)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def heatmap(array, like: Volume, name: str, kind: str, description: str = "") -> Heatmap:
    array = np.asarray(array, dtype=np.float32)
    if array.shape != like.shape:
        raise ValueError(f"heatmap shape {array.shape} differs from the image's {like.shape}")
    return Heatmap(np.clip(array, 0, 1), like.affine.copy(), name, kind, description)


def removed_noise(before, after, percentile: float = 99.5) -> np.ndarray:
    """|before - after| scaled so its ``percentile`` maps to 1 (what an image model removed)."""
    diff = np.abs(np.asarray(before, np.float32) - np.asarray(after, np.float32))
    top = float(np.percentile(diff, percentile)) if diff.size else 0.0
    return normalize(diff, 0.0, max(top, 1e-6))


def class_scores(model):
    """Wrap a dense-prediction network as a (B, classes) scorer (mean logit per class)."""
    import torch

    class ClassScores(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, x):
            y = self.model(x)
            return y.flatten(2).mean(-1)

    return ClassScores(model)


def pick_layer(model, example) -> str:
    """A GradCAM target layer: the last convolution at the coarsest resolution (the bottleneck)."""
    import torch

    sizes: dict[str, int] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.modules.conv._ConvNd):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: sizes.__setitem__(name, int(np.prod(o.shape[2:])))))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    if not sizes:
        raise ValueError("the network has no convolution layer for GradCAM")
    smallest = min(sizes.values())
    return [n for n, s in sizes.items() if s == smallest][-1]


def gradcam(model, image, class_index: int, *, target_layer: str | None = None, roi_size=None,
            context=None, overlap: float = 0.25) -> np.ndarray:
    """GradCAM of ``class_index`` for a (1, C, *spatial) tensor, by sliding window when ``roi_size``."""
    import torch
    from monai.visualize import GradCAM

    scorer = class_scores(model)
    spatial = tuple(image.shape[2:])
    roi = tuple(roi_size) if roi_size else spatial
    window = image[(slice(None), slice(None), *[slice(0, min(r, s)) for r, s in zip(roi, spatial)])]
    layer = "model." + (target_layer or pick_layer(model, window))
    cam = GradCAM(nn_module=scorer, target_layers=layer)

    def one(x):
        with torch.enable_grad():
            return cam(x.clone().requires_grad_(True), class_idx=class_index).detach()

    if roi_size and any(s > r for s, r in zip(spatial, roi)):
        from viewer.ai.inference import sliding_window

        out = sliding_window(one, image, roi, context=context, overlap=overlap, message="explaining")
    else:
        out = one(image)
    return normalize(out[0, 0].float().cpu().numpy())


def occlusion(model, image, class_index: int, *, mask_size: int = 8, n_batch: int = 16, center=None,
              roi_size=(32, 32, 32), context=None) -> np.ndarray:
    """Occlusion sensitivity of ``class_index`` within a window of ``roi_size`` around ``center``.

    Returns a map of the whole image (zero outside the window): how much the class score drops
    when each region is occluded, scaled to [0, 1].
    """
    import torch
    from monai.visualize import OcclusionSensitivity

    spatial = tuple(image.shape[2:])
    roi = tuple(min(int(r), s) for r, s in zip(roi_size, spatial))
    center = [s // 2 for s in spatial] if center is None else [int(c) for c in center]
    start = [min(max(c - r // 2, 0), s - r) for c, r, s in zip(center, roi, spatial)]
    region = tuple(slice(a, a + r) for a, r in zip(start, roi))
    window = image[(slice(None), slice(None), *region)]
    scorer = class_scores(model).eval()
    if context is not None:
        context.check_cancelled()
        context.progress(0.9, "explaining (occlusion)")
    with torch.no_grad():
        base = scorer(window)[0, class_index].item()
        mask = tuple(min(int(mask_size), r) for r in roi)  # thin volumes: never larger than the window
        occ = OcclusionSensitivity(scorer, mask_size=mask, n_batch=n_batch, mode="gaussian", overlap=0.25,
                                   verbose=False, activate=False)
        occ_map, _ = occ(window)
    drop = base - occ_map[0, class_index].float().cpu().numpy()
    out = np.zeros(spatial, np.float32)
    out[region] = normalize(np.clip(drop, 0, None))
    return out
