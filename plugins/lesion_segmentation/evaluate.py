"""Simulated reading sessions on held-out lesions, and the baselines' tuning on training lesions.

    python plugins/lesion_segmentation/evaluate.py --tune     # grid-search the baselines (training lesions)
    python tests/benchmarks/bench_lesion_seg.py               # the table (held-out lesions)
    python plugins/lesion_segmentation/evaluate.py --validate W1.pt W2.pt ...   # choose among candidates
    python plugins/lesion_segmentation/evaluate.py --validate plugins/lesion_segmentation/weights.pt \
        --expert plugins/lesion_segmentation/weights_whole_tumour.pt   # the plugin's two networks, routed

The validation set (``validation_volumes``) is not the held-out bench: synthetic lesions inserted
into the training volumes with seeds no training run used (put back into the whole volume, so the
segmenter's windows see the volume and its border as on any real volume), and the largest real
training lesions; candidates are compared there before the bench is looked at (train.py, "Weight
averages").

A session: the first click at the lesion's most interior point (largest distance to its boundary,
in mm), then up to ``CORRECTIONS`` corrective clicks, each at the most interior point of the largest
error region of the current mask (positive in a miss, negative in a false positive).  Dice on the
volume's own grid against the reference.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parents[1]))

from plugins.lesion_segmentation import data  # noqa: E402
from plugins.lesion_segmentation.baselines import dice  # noqa: E402

CORRECTIONS = 3


def session(method, image, vox, modality, truth, corrections: int = CORRECTIONS, cpu: list | None = None,
            nets: list | None = None):
    """(Dice after each click, wall seconds per click) of one simulated reading session; ``cpu``, when
    given, receives the CPU seconds (all threads of this process) per click, ``nets`` the network that
    drew each click's mask (``method.last_network``, segmenter.RoutedSegmenter; None for the others)."""
    pos = [data.interior_point(truth, vox)]
    neg: list = []
    full = None
    newest = None  # the sign of the corrective click just made
    dices, seconds = [], []
    for n in range(corrections + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        sl, _, m = method.segment(image, vox, modality, list(pos), list(neg), None, full, newest=newest)
        seconds.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
        if nets is not None:
            nets.append(getattr(method, "last_network", None))
        full = np.zeros(truth.shape, bool) if full is None else full
        full[sl] = m
        dices.append(dice(full, truth))
        if n == corrections:
            break
        click = data.corrective_click(truth, full, vox)
        if click is None:
            break
        (pos if click[1] else neg).append(click[0])
        newest = bool(click[1])
    return dices, seconds


def training_lesions(max_per_case: int = 3):
    """(image, vox, modality, truth) of the real training lesions, largest first per case."""
    out = []
    for c in data.training_cases():
        for m in sorted(c.lesions, key=lambda m: -int(m.sum()))[:max_per_case]:
            out.append((c.image, c.vox, c.modality, m))
    return out


class ValCase:
    """One validation session's volume: a training volume, with a synthetic lesion added where one was
    drawn (``patch``: the volume slices, the image difference there, the truth there), or one of its real
    lesions (``mask``); ``cutout``: instead the old 128^3 window cut out around the lesion (below)."""

    def __init__(self, kind, name, case, modality, patch=None, mask=None, cutout=None):
        self.kind, self.name, self.case, self.modality = kind, name, case, modality
        self.patch, self.mask, self.cutout = patch, mask, cutout

    def volume(self):
        """(image, vox, truth), made when asked for (a full volume each)."""
        if self.cutout is not None:
            return self.cutout
        if self.mask is not None:
            return self.case.image, self.case.vox, self.mask
        sl, diff, truth_patch = self.patch
        image = self.case.image.copy()
        image[sl] += diff
        truth = np.zeros(image.shape, bool)
        truth[sl] = truth_patch
        return image, self.case.vox, truth


def drawn_into_volume(drawn: dict, case, img, gt):
    """A synthetic lesion that train.Sampler.window drew (``drawn``: its ``Sampler.drawn``; ``img``,
    ``gt``: the window and truth it returned) put back into the case's own voxels: the window's flips
    and CT offset undone, the image difference and the truth each smoothed as the window's sampling
    smooths (network.Window.sample) where the volume's voxels are coarser than the window's, then
    resampled onto the voxels the window covers (network.Window.paste).  (slices, difference, truth)."""
    from scipy import ndimage

    for axis in drawn["flips"]:  # back to the volume's orientation
        img, gt = np.flip(img, axis), np.flip(gt, axis)
    w = drawn["window"]
    diff = np.asarray(img, np.float32) - drawn["offset"] - w.sample(case.image)
    truth = gt.astype(np.float32)
    sig = [0.4 * v / w.spacing if v / w.spacing > 1.5 else 0.0 for v in case.vox]
    if any(sig):
        diff = ndimage.gaussian_filter(diff, sig, mode="nearest")
        truth = ndimage.gaussian_filter(truth, sig, mode="nearest")
    sl, d = w.paste(diff, case.image.shape)
    _, t = w.paste(truth, case.image.shape)
    return sl, d.astype(np.float32), t > 0.5


def validation_volumes(plain: int = 24, necrotic: int = 16, real_per_case: int = 3, cutout: bool = False):
    """The validation sessions (``ValCase``): ``plain`` synthetic lesions (train.Sampler at the fitted
    window scale, seed 4242, a quarter extra lung lesions; half of its draws are real training lesions)
    and ``necrotic`` synthetic bright-rimmed, dark-cored MR lesions (seed 4343, the MR training volumes
    without lesions), and the ``real_per_case`` largest real lesions of each training case.

    Each synthetic lesion is drawn in a 128^3 window at its window spacing, wholly inside it, and put
    back into its own training volume (``drawn_into_volume``), so that every window the segmenter opens sees
    the volume as it is and its real border, as on any real volume.  ``cutout=True``: the set as it was
    before 2026-12-05 evening, each lesion's 128^3 window cut out as the volume (the same lesions); the
    first click's 2 mm pass, 128 mm wide, then reached far past that volume (64-110 mm wide for most
    lesions) into copied border voxels, which never happens on a real volume (the padding measured
    in training_log.json "validation_fix")."""
    from plugins.lesion_segmentation.train import SEED, Sampler

    class _Sampler(Sampler):
        def spacing(self, extent):
            self.last = super().spacing(extent)
            return self.last

    cases = data.training_cases(SEED)
    out: list[ValCase] = []
    for kind, share, n, seed in (("plain", 0.0, plain, 4242), ("necrotic", 1.0, necrotic, 4343)):
        pool = cases if kind == "plain" else [c for c in cases if c.modality == "MR" and not c.lesions]
        s = _Sampler(pool, np.random.default_rng(seed), wide=False, max_extent=110, coarse_share=0.0,
                     lung_share=0.25 if kind == "plain" else 0.0, necrotic=share)
        draw = 0
        while sum(o.kind == kind for o in out) < n:
            img, gt, modality = s.window(128)
            draw += 1
            if gt.sum() < 30 or gt[[0, -1]].any() or gt[:, [0, -1]].any() or gt[:, :, [0, -1]].any():
                continue
            name = f"{kind} draw {draw}"  # the same lesion has the same name in both set-ups
            d = s.drawn
            case = pool[d["case"]]
            if cutout:
                out.append(ValCase(kind, name, case, modality, cutout=(img.astype(np.float32),
                                                                      np.array([s.last] * 3), gt)))
                continue
            if d["real_mask"] is not None:
                out.append(ValCase(kind, name, case, modality, mask=d["real_mask"]))
                continue
            patch = drawn_into_volume(d, case, img, gt)
            if patch[2].sum() < 30:  # too small on the volume's own voxels (thick slices): drawn again
                continue
            out.append(ValCase(kind, name, case, modality, patch=patch))
    for c in cases:
        for i, m in enumerate(sorted(c.lesions, key=lambda m: -int(m.sum()))[:real_per_case]):
            out.append(ValCase("real training", f"{c.name}#{i}", c, c.modality, mask=m))
    return out


def validate(weights: list[str], log=print, cutout: bool = False, expert: str | None = None,
             route_ml: float | None = None) -> dict:
    """Mean Dice after 1 click and after 3 corrective clicks, per validation set and over all sessions
    (``cutout``: on the old set-up, ``validation_volumes``).  ``expert``: each of ``weights`` routed with
    this whole-tumour expert (segmenter.RoutedSegmenter, at ``route_ml`` mL); the sessions the expert
    drew any mask of are logged one by one."""
    from plugins.lesion_segmentation.segmenter import EXPERT, ROUTE_ML, RoutedSegmenter, Segmenter

    vols = validation_volumes(cutout=cutout)
    res = {}
    for w in weights:
        route = ROUTE_ML if route_ml is None else route_ml
        seg = Segmenter(w) if expert is None else RoutedSegmenter(w, expert, route_ml=route)
        per: dict = {}
        routed = []
        for v in vols:
            img, vox, truth = v.volume()
            nets: list = []
            dices, _ = session(seg, img, vox, v.modality, truth, nets=nets)
            kind = v.kind
            per.setdefault(kind, []).append((dices[0], dices[-1]))
            if EXPERT in nets:
                routed.append({"session": v.name, "case": v.case.name, "kind": kind,
                               "truth_ml": round(float(truth.sum() * np.prod(vox) / 1000), 1),
                               "networks": nets, "dice_1": round(dices[0], 3), "dice_3c": round(dices[-1], 3)})
                log(f"  routed: {routed[-1]}")
        allv = [d for v in per.values() for d in v]
        res[w] = {k: [round(float(np.mean([d[i] for d in v])), 3) for i in (0, 1)] for k, v in per.items()}
        res[w]["all"] = [round(float(np.mean([d[i] for d in allv])), 3) for i in (0, 1)]
        if expert is not None:
            res[w]["routed"] = routed
        log(f"{w}: " + ", ".join(f"{k} ({len(per.get(k, allv))}) {v[0]:.3f} / {v[1]:.3f}" for k, v in res[w].items()
                                 if k != "routed"))
    return res


def main(argv=None) -> int:
    import argparse

    from plugins.lesion_segmentation import baselines

    ap = argparse.ArgumentParser()
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--validate", nargs="+", metavar="WEIGHTS",
                    help="Dice after 1 / 3 clicks of these weights on the validation set (not the bench)")
    ap.add_argument("--expert", metavar="WEIGHTS",
                    help="with --validate: MR lesions routed to this whole-tumour expert as the plugin "
                         "does (segmenter.RoutedSegmenter)")
    ap.add_argument("--route-ml", type=float,
                    help="with --expert: the routing threshold in mL (default segmenter.ROUTE_ML)")
    ap.add_argument("--cutout", action="store_true",
                    help="with --validate: the old set-up, each synthetic lesion's 128^3 window as the volume")
    args = ap.parse_args(argv)
    if args.validate:
        import torch

        torch.set_num_threads(1)
        validate(args.validate, cutout=args.cutout, expert=args.expert, route_ml=args.route_ml)
    if args.tune:
        lesions = training_lesions()
        lines = []
        best = baselines.tune(lesions, log=lambda s: (print(s, flush=True), lines.append(s)))
        print(json.dumps(best, indent=1))
        log_path = HERE / "tuning_log.json"
        log = json.loads(log_path.read_text()) if log_path.exists() else {}
        log["baselines"] = {"tuned_on": f"{len(lesions)} training lesions (1-click Dice)", "grid": lines,
                            "best": {k: {"dice": round(v[0], 4), "params": v[1]} for k, v in best.items()}}
        log_path.write_text(json.dumps(log, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
