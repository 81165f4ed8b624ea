"""Lesion change over time on the synthetic follow-up of the real chest CT (tests/followup.py: a known
rigid move and smooth deformation, the right-lung tumour grown 1.2x radially, 120 days apart): the
baseline's reference tumour outline carried to the follow-up through a rigid and a deformable
registration (viewer.core.registration), and the follow-up volume (so the volume change) each way of
getting it gives, against the known growth:

- carried (rigid): the prior's lesion as it was, moved (no change: what carrying must keep);
- carried (deformable, shape kept): the same through the deformable registration (the default);
- carried (deformable, warped): the label map warped by the B-spline, which absorbs part of the growth;
- fitted to the image (viewer.core.longitudinal.fit_to_image) after the rigid and the deformable carry;
- baselines: a plain threshold region grown from the carried centroid at the same threshold (the prior
  outline's own, ``outline_threshold``), within the same 12 mm of the carried lesion (no prior tissue
  left out), and unbounded;
- the reference outline of the follow-up (the discretised truth: what a reader's outline gives).

Then the fit on the unchanged baseline (identity: no change must read as none) and the threshold.

    python tests/benchmarks/bench_lesion_change.py [--stride 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def dice(a, b) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--stride", type=int, default=2, help="every n-th row and column (1: full 512x512)")
    args = p.parse_args()
    os.environ["HOUNSFIELD_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-change-")
    import SimpleITK as sitk
    from scipy import ndimage as ndi

    from tests.followup import TUMOUR_SLICES, make_followup
    from viewer.core.loader import load
    from viewer.core.longitudinal import carry_labels, carry_segmentation, fit_to_image, oriented, outline_threshold
    from viewer.core.registration import Registration, register
    from viewer.core.segmentation import Segmentation

    fu = make_followup(Path(tempfile.gettempdir()) / f"hounsfield-bench-followup-s{args.stride}",
                       stride=args.stride, slices=TUMOUR_SLICES)
    base, follow = load(str(fu.baseline_dir), use_index=False), load(str(fu.followup_dir), use_index=False)
    mask_b, mask_f = fu.masks()
    voxel_ml = abs(np.linalg.det(fu.affine[:3, :3])) / 1000.0
    vb = mask_b.sum() * voxel_ml
    print(f"synthetic follow-up: {follow.shape} voxels of {follow.spacing.round(2).tolist()} mm; known growth "
          f"{fu.tumour_volume_baseline_ml:.2f} -> {fu.tumour_volume_followup_ml:.2f} mL (+{fu.growth_ml:.2f} mL, "
          f"{fu.growth_percent:+.0f}%); on this grid {vb:.2f} -> {mask_f.sum() * voxel_ml:.2f} mL\n")
    regs = {}
    for kind in ("rigid", "deformable"):
        t = time.perf_counter()
        reg = register(follow, base, kind)
        regs[kind] = oriented(reg, follow, base)
        print(f"{kind} registration {time.perf_counter() - t:5.1f} s, landmark TRE mean "
              f"{fu.tre(reg.to_moving).mean():.2f} mm")
    seg = Segmentation.for_volume(base, "Lesions")
    s = seg.add_segment("Tumour")
    seg.layers[0][mask_b] = s.number
    rows = []

    def row(name, mask, seconds):
        v = mask.sum() * voxel_ml
        rows.append((name, v, v - vb, 100 * ((v - vb) - fu.growth_ml) / fu.growth_ml, dice(mask, mask_f), seconds))

    t = time.perf_counter()
    carried = carry_segmentation(regs["rigid"], base, seg, follow)[0].layers[0] == s.number
    row("carried (rigid)", carried, time.perf_counter() - t)
    t = time.perf_counter()
    kept = carry_segmentation(regs["deformable"], base, seg, follow)[0].layers[0] == s.number
    row("carried (deformable, shape kept)", kept, time.perf_counter() - t)
    t = time.perf_counter()
    warped = carry_labels(regs["deformable"], base, mask_b.astype(np.uint8), follow) != 0
    row("carried (deformable, warped)", warped, time.perf_counter() - t)
    t = time.perf_counter()
    fitted = fit_to_image(regs["rigid"], base, mask_b, follow, carried)
    row("fitted to the image (rigid carry)", fitted, time.perf_counter() - t)
    t = time.perf_counter()
    fitted_d = fit_to_image(regs["deformable"], base, mask_b, follow, kept)
    row("fitted to the image (deformable carry)", fitted_d, time.perf_counter() - t)
    # the baseline: the fit's threshold (the prior outline's own), region grown from the carried centroid
    # on the follow-up (the same box), nothing left out
    t = time.perf_counter()
    hb = base.real_values().astype(np.float32)
    thr, _ = outline_threshold(hb, mask_b)
    shell = ndi.binary_dilation(mask_b, iterations=3) & ~mask_b
    half = 0.5 * (np.median(hb[mask_b]) + np.median(hb[shell]))  # the fit's threshold before
    hf = follow.real_values().astype(np.float32)
    near = ndi.distance_transform_edt(~carried, sampling=follow.spacing[::-1]) <= 12.0
    lab, _ = ndi.label((hf >= thr) & near)
    c = np.round(np.argwhere(carried).mean(0)).astype(int)
    grown = lab == lab[tuple(c)] if lab[tuple(c)] else np.zeros_like(carried)
    row(f"baseline: grown at {thr:.0f} HU, 12 mm", grown, time.perf_counter() - t)
    lab, _ = ndi.label(hf >= thr)
    free = lab == lab[tuple(c)] if lab[tuple(c)] else np.zeros_like(carried)
    row("baseline: grown, unbounded", free, time.perf_counter() - t)
    row("reference outline of the follow-up", mask_f, 0.0)
    print(f"\n{'method':40s} {'now mL':>8s} {'change mL':>10s} {'vs known':>9s} {'Dice':>6s} {'s':>6s}")
    for name, v, d, err, dc, sec in rows:
        print(f"{name:40s} {v:8.2f} {d:+10.2f} {err:+8.0f}% {dc:6.3f} {sec:6.2f}")
    print(f"\n{'known growth':40s} {fu.tumour_volume_followup_ml:8.2f} {fu.growth_ml:+10.2f}")
    ref_change = mask_f.sum() * voxel_ml - vb
    for name, _v, d, _err, _dc, _sec in rows:
        if name.startswith("fitted"):
            print(f"{name}: {100 * (d - ref_change) / ref_change:+.1f}% of the change the reference outline reads")
    ident = Registration(base.source.series_instance_uid, base.source.series_instance_uid, "identity",
                         sitk.Euler3DTransform())
    same = fit_to_image(ident, base, mask_b, base, mask_b)
    print(f"fit on the unchanged baseline (identity): {same.sum() * voxel_ml:.2f} mL against the outline's "
          f"{vb:.2f} mL ({100 * (same.sum() / mask_b.sum() - 1):+.1f}%, Dice {dice(same, mask_b):.3f}); "
          f"threshold {thr:.0f} HU (halfway between the medians: {half:.0f} HU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
