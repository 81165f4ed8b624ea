"""SynthRAD metrics for synthetic CT: MAE, PSNR and SSIM inside the body mask, HU clipped to -1024..3000.

    python -m plugins.mr_to_ct.evaluate PRED CT MASK [PRED CT MASK ...] [--json out.json]

PRED, CT and MASK are any volumes the viewer reads (NIfTI, NRRD, MHA, DICOM folders) on one grid
(PRED is resampled onto CT's grid, linearly, when its grid differs; MASK must be on CT's grid).

The definitions follow the SynthRAD2023 challenge's ``image_metrics.py`` (the numbers every
MR-to-CT paper reports), written here from their description:

* both images clipped to [-1024, 3000] HU;
* MAE: mean |CT - PRED| over the mask;
* PSNR: 10 log10(4024^2 / MSE), the MSE over the mask, 4024 HU the fixed population range;
* SSIM: scikit-image's SSIM (7-voxel uniform window, data range 4024) of the two images with the
  voxels outside the mask set to -1024 and everything shifted by +1024, averaged over the mask's
  voxels of the SSIM map, a 3-voxel border cropped as scikit-image does.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

HU_MIN, HU_MAX = -1024.0, 3000.0
DATA_RANGE = HU_MAX - HU_MIN


def _prepare(ct, pred, mask):
    ct = np.clip(np.asarray(ct, dtype=np.float64), HU_MIN, HU_MAX)
    pred = np.clip(np.asarray(pred, dtype=np.float64), HU_MIN, HU_MAX)
    mask = np.asarray(mask) > 0
    if ct.shape != pred.shape or ct.shape != mask.shape:
        from viewer.core.errors import HounsfieldError

        raise HounsfieldError(f"The synthetic CT {pred.shape}, the CT {ct.shape} and the mask {mask.shape} "
                              "must have the same shape; resample them onto one grid first.")
    if not mask.any():
        from viewer.core.errors import HounsfieldError

        raise HounsfieldError("The body mask is empty; give a mask with the body's voxels set to 1.")
    return ct, pred, mask


def mae(ct, pred, mask) -> float:
    ct, pred, mask = _prepare(ct, pred, mask)
    return float(np.abs(ct[mask] - pred[mask]).mean())


def psnr(ct, pred, mask) -> float:
    ct, pred, mask = _prepare(ct, pred, mask)
    mse = float(np.mean((ct[mask] - pred[mask]) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(DATA_RANGE ** 2 / mse))


def ssim(ct, pred, mask) -> float:
    try:
        from skimage.metrics import structural_similarity
        from skimage.util import crop
    except ImportError:
        from viewer.core.errors import HounsfieldError

        raise HounsfieldError("SSIM needs scikit-image, which is not installed; install it with "
                              "'pip install scikit-image'.") from None

    ct, pred, mask = _prepare(ct, pred, mask)
    a = np.where(mask, ct, HU_MIN) - HU_MIN
    b = np.where(mask, pred, HU_MIN) - HU_MIN
    if min(a.shape) < 7:  # the 7-voxel window needs room: pad thin volumes (single slices) by edge copies
        pad = [(max(0, (7 - n + 1) // 2),) * 2 for n in a.shape]
        a, b, mask = (np.pad(x, pad, mode="edge") for x in (a, b, mask))
    _, smap = structural_similarity(a, b, data_range=DATA_RANGE, full=True)
    inner = crop(mask, 3)
    if inner.any():
        return float(crop(smap, 3)[inner].mean(dtype=np.float64))
    return float(smap[mask].mean(dtype=np.float64))  # a mask only within the border


def metrics(ct, pred, mask) -> dict[str, float]:
    """MAE (HU), PSNR (dB) and SSIM of ``pred`` against ``ct`` inside ``mask``."""
    return {"mae": mae(ct, pred, mask), "psnr": psnr(ct, pred, mask), "ssim": ssim(ct, pred, mask)}


def evaluate_files(pred_path, ct_path, mask_path) -> dict[str, float]:
    import SimpleITK as sitk

    import viewer
    from viewer.core.formats import sitk_from_volume

    ct = viewer.load(ct_path)
    pred = viewer.load(pred_path)
    mask = viewer.load(mask_path)
    if mask.shape != ct.shape:
        from viewer.core.errors import HounsfieldError

        raise HounsfieldError(f"The mask {mask_path} is not on the CT's grid ({mask.shape} vs {ct.shape}).")
    p = pred.real_values()
    if pred.shape != ct.shape or not np.allclose(pred.affine, ct.affine, atol=1e-3):
        img = sitk.Resample(sitk_from_volume(viewer.Volume(np.asarray(p, np.float32), pred.affine)),
                            sitk_from_volume(ct), sitk.Transform(), sitk.sitkLinear, HU_MIN, sitk.sitkFloat32)
        p = sitk.GetArrayFromImage(img)
    return metrics(ct.real_values(), p, mask.array)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plugins.mr_to_ct.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="PRED CT MASK, repeated for several cases")
    ap.add_argument("--json", help="also write the per-case and mean figures to this JSON file")
    args = ap.parse_args(argv)
    if len(args.files) % 3:
        print("evaluate: give the files in threes: PRED CT MASK [PRED CT MASK ...].", file=sys.stderr)
        return 2
    from viewer.core.errors import HounsfieldError

    rows = []
    try:
        for n in range(0, len(args.files), 3):
            pred, ct, mask = args.files[n:n + 3]
            rows.append({"pred": pred, "ct": ct, "mask": mask, **evaluate_files(pred, ct, mask)})
    except HounsfieldError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print(f"{'case':40s} {'MAE (HU)':>9s} {'PSNR (dB)':>10s} {'SSIM':>7s}")
    for r in rows:
        print(f"{r['pred'][-40:]:40s} {r['mae']:9.1f} {r['psnr']:10.2f} {r['ssim']:7.4f}")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("mae", "psnr", "ssim")}
    if len(rows) > 1:
        print(f"{'mean':40s} {mean['mae']:9.1f} {mean['psnr']:10.2f} {mean['ssim']:7.4f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"cases": rows, "mean": mean}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
