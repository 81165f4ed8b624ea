"""Train the nodule detector on real chest CT with synthetic nodules inserted into real lung.

    python plugins/lung_nodules/train.py                      # both stages: ~35 + ~18 min on a CPU
    python plugins/lung_nodules/train.py --init STAGE1.pt     # stage 2 only, from the stage-1 weights
    python plugins/lung_nodules/train.py --stages 1           # stage 1 only (commit 88b0c1a's weights.pt)
    python plugins/lung_nodules/train.py --iterations 50      # a quick smoke run (not shipped)

Data: the real CTs of ``../shared/data`` except the held-out evaluation CT (``chest-ct``, refused
by path and by voxel content): radiomics-lung1 and -lung2 (5 mm slices; their real nodule and mass,
from their label maps, are positives), the LIDC-IDRI-0002 12-slice slab (its readers' nodule, from
reads.xml, is left out of the loss), the ct-aorta crop and the TotalSegmentator example CT (both
hold part of the lungs).  Each is resampled to the network's 2 x 1 x 1 mm grid, its lungs masked
(lungmask.py) and, ``REALISATIONS`` times, filled with random synthetic nodules (synth.py: 3-30 mm,
solid/part-solid/ground-glass, round/lobulated/spiculated, isolated/juxtapleural/juxtavascular/
perifissural, blurred for the scan's own slice thickness, the scan's noise).  Patches of
``PATCH`` voxels: 55% around a nodule, 25% on a vessel bifurcation (hard negatives), 20% anywhere
in the lung; flips, a little HU scaling and extra correlated noise.  Loss: weighted BCE + soft Dice
on the nodule masks.  That is stage 1 (900 iterations, seed 14, 1 thread).  Stage 2 (``FINETUNE``)
fine-tunes it on a fresh pool (seed 15, 4 copies per CT) with twice the nodules per copy, three in
four of them 3-10 mm, and patches 50% around a nodule, 30% on thick vessel bifurcations (two in three
of them hilar: in the medial band of the chest, where stage 1's false positives were), 20% anywhere
in the lung; 1000 iterations at a peak learning rate of 1e-3 on 2 threads.  Everything is seeded;
the weights are a plain ``state_dict``.

Stage 3 (``--stage fpr``, a candidate, not shipped): the second-stage false-positive classifier of
fpr.py, trained on the shipped network's candidates on fresh copies of the training CTs (``FPR``:
seed 21, four copies of each, the stage-2 nodule recipe).  Written to ``--fpr-out``; the benchmark
evaluates it with ``--fpr PATH``.  On the held-out benchmark it ranked worse than the network's own
peaks (solid >= 6 mm at 1 / 2 / 4 FP/scan: 75.0 / 79.2 / 87.5% against 83.3 / 83.3 / 83.3%), so the
plugin does not use it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parents[1]))

from plugins.lung_nodules import lungmask, synth  # noqa: E402
from plugins.lung_nodules.network import GRID_MM, HU_HI, HU_LO  # noqa: E402

DATA = HERE.parents[1].parent / "shared" / "data"
HELD_OUT = "chest-ct"
HELD_OUT_SERIES = "chest-ct: 512x512x141 CT, 0.977 x 0.977 x 2.0 mm"
CASES = {
    "radiomics-lung1": ("lung-nodule-ct/radiomics-lung1/image.nrrd", "lung-nodule-ct/radiomics-lung1/label.nrrd"),
    "radiomics-lung2": ("lung-nodule-ct/radiomics-lung2/image.nrrd", "lung-nodule-ct/radiomics-lung2/label.nrrd"),
    "lidc-idri-0002-slab": ("lung-nodule-ct/lidc-idri-0002", None),
    "ct-aorta": ("ct-aorta/ct_cropped.nii.gz", None),
    "totalseg-example-ct": ("totalseg-examples/example_ct.nii.gz", None),
}
REALISATIONS = 5
PATCH = (24, 64, 64)
BATCH = 4
ITERATIONS = 900
LR = 2e-3
SEED = 14
# Stage 2 (the shipped weights): stage 1 above, then fine-tuned on a fresh pool with more and smaller
# nodules per copy and hard negatives on the hilar (medial, thick) vessel bifurcations.
FINETUNE = {"iterations": 1000, "lr": 1e-3, "seed": 15, "realisations": 4, "nodule_factor": 2.0,
            "small_fraction": 0.75, "small_mm": (3.0, 10.0), "large_mm": (10.0, 30.0),
            "p_nodule": 0.5, "p_bifurcation": 0.3, "p_hilar": 0.65, "bifurcations": 500,
            "bifurcation_min_mm": 2.5, "threads": 2}


class HeldOutError(ValueError):
    """The evaluation CT was offered for training."""


@dataclass
class Case:
    name: str
    hu: np.ndarray  # float32 on the training grid, cropped to the lungs
    lung: np.ndarray  # bool
    lesion: np.ndarray  # uint8: 1 real lesion (positive), 2 ignore
    spacing: np.ndarray
    thickness: float
    lesions: list  # (center_kji, diameter_mm) of the real positive lesions


def _voxel_hash(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a[:: max(1, a.shape[0] // 8)]).tobytes()).hexdigest()


def refuse_held_out(path: Path, volume=None) -> None:
    """Raise if ``path`` (or a volume's voxels) is the held-out chest CT."""
    if Path(path).resolve() == (DATA / HELD_OUT).resolve() or Path(path).name == HELD_OUT:
        raise HeldOutError(f"{path} is the held-out evaluation CT; it must never be trained on.")
    if volume is not None and volume.shape == (141, 512, 512) and abs(float(volume.spacing[2]) - 2.0) < 1e-3:
        held = _held_out_hash()
        if held is not None and _voxel_hash(volume.array) == held:
            raise HeldOutError(f"{path} holds the voxels of the held-out evaluation CT.")


def _held_out_hash():
    import viewer

    p = DATA / HELD_OUT
    return _voxel_hash(viewer.load(p).array) if p.exists() else None


def load_case(name: str, data: Path = DATA) -> Case:
    import viewer

    image, label = CASES[name]
    path = data / image
    refuse_held_out(path)
    vol = viewer.load(path)
    refuse_held_out(path, vol)
    sp = np.asarray(vol.spacing[::-1], float)
    hu = vol.real_values().astype(np.float32)
    lesion = np.zeros(hu.shape, np.uint8)
    if label:
        lesion[viewer.load(data / label).array > 0] = 1
    if name.startswith("lidc"):
        from plugins.lung_nodules import lidc

        for m in lidc.reader_masks(lidc.parse_reads(path / "reads.xml"), vol).values():
            lesion[m] = 2
    grid, gs = lungmask.resample(hu, sp, GRID_MM)
    les, _ = lungmask.resample(lesion, sp, GRID_MM, order=0, shape=grid.shape)
    lung = lungmask.lung_mask(grid, gs, vol.affine) > 0
    lung |= les > 0
    box = np.argwhere(lung)
    margin = np.ceil(8.0 / gs).astype(int)
    lo = np.maximum(box.min(0) - margin, 0)
    hi = np.minimum(box.max(0) + margin + 1, grid.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    les = les[sl]
    lesions = []
    if (les == 1).any():
        from scipy import ndimage

        lab, n = ndimage.label(les == 1)
        for i in range(1, n + 1):
            m = lab == i
            vol_mm3 = float(m.sum() * np.prod(gs))
            lesions.append((np.argwhere(m).mean(0), 2 * (3 * vol_mm3 / (4 * np.pi)) ** (1 / 3)))
    return Case(name, grid[sl], lung[sl], les, gs, float(sp[0]), lesions)


def realise(case: Case, rng, ft: dict | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """One copy of ``case`` with random nodules: (int16 HU, uint8 target: 1 nodule, 2 ignore, nodules).
    ``ft``: the fine-tuning recipe (more nodules, mostly small)."""
    hu = case.hu.copy()
    lung_ml = float(case.lung.sum() * np.prod(case.spacing)) / 1000
    n = int(np.clip(round(lung_ml / 120), 3, 25))
    size = (3.0, 30.0) if case.hu.shape[0] * case.spacing[0] >= 60 else (3.0, 10.0)
    specs = None
    if ft is not None:
        n = int(np.clip(round(n * ft["nodule_factor"]), 6, 50))
        thin = size[1] <= 10.0
        specs = [synth.random_spec(rng, ft["small_mm"] if thin or rng.random() < ft["small_fraction"]
                                   else ft["large_mm"]) for _ in range(n)]
    nods = synth.insert_random_nodules(hu, case.lung, case.spacing, n, rng, thickness_mm=case.thickness,
                                       taken=case.lesion > 0, size_mm=size, specs=specs)
    target = case.lesion.copy()
    for nd in nods:
        region = target[nd.box]
        region[nd.mask & (region == 0)] = 1
    centres = [(np.asarray(nd.center_kji), nd.diameter_mm) for nd in nods] + list(case.lesions)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), target, centres


def _crop(a, centre, size, fill):
    lo = np.asarray(centre, int) - np.asarray(size) // 2
    hi = lo + np.asarray(size)
    src = tuple(slice(max(0, l_), min(n, h)) for l_, h, n in zip(lo, hi, a.shape))
    pad = [(max(0, -l_), max(0, h - n)) for l_, h, n in zip(lo, hi, a.shape)]
    out = a[src]
    if any(p != (0, 0) for p in pad):
        out = np.pad(out, pad, mode="edge" if fill is None else "constant",
                     **({} if fill is None else {"constant_values": fill}))
    return out


def hilar(points: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """The ``points`` in the medial 40% of their lung's half of the chest (hilar vessels and bronchi)."""
    if len(points) == 0:
        return points
    cols = np.flatnonzero(lung.any(axis=(0, 1)))
    lo, hi = cols.min(), cols.max()
    mid = (lo + hi) / 2.0
    half = max((hi - lo) / 2.0, 1.0)
    i = points[:, 2].astype(float)
    return points[np.abs(i - mid) < 0.4 * half]


def sample(pool, rng, ft: dict | None = None):
    """One training patch (input float32, target float32, weight float32) from the pool."""
    from scipy import ndimage

    item = pool[rng.integers(len(pool))]
    hu, target, centres, bif, lung_pts, spacing = item[:6]
    p_nod, p_bif = (0.55, 0.25) if ft is None else (ft["p_nodule"], ft["p_bifurcation"])
    r = rng.random()
    if r < p_nod and centres:
        c, d = centres[rng.integers(len(centres))]
        jitter = np.array([6.0, 14.0, 14.0]) * (1.0 if d < 20 else 0.5)
        centre = np.asarray(c) + rng.uniform(-1, 1, 3) * jitter / spacing
    elif r < p_nod + p_bif and len(bif):
        hil = item[6] if ft is not None else ()
        pts = hil if len(hil) and rng.random() < ft["p_hilar"] else bif
        centre = pts[rng.integers(len(pts))] + rng.uniform(-2, 2, 3)
    else:
        centre = lung_pts[rng.integers(len(lung_pts))]
    x = _crop(hu, np.rint(centre), PATCH, None).astype(np.float32)
    t = _crop(target, np.rint(centre), PATCH, 0)
    if rng.random() < 0.5:
        x += ndimage.gaussian_filter(rng.standard_normal(x.shape).astype(np.float32), (0, 0.7, 0.7)) * \
            rng.uniform(5, 40)
    x *= rng.uniform(0.97, 1.03)
    for ax in range(3):
        if rng.random() < 0.5:
            x, t = np.flip(x, ax), np.flip(t, ax)
    x = (np.clip(x, HU_LO, HU_HI) + 300.0) / 700.0
    return (np.ascontiguousarray(x, np.float32), (t == 1).astype(np.float32), (t != 2).astype(np.float32))


def build_pool(rng, data: Path = DATA, log=print, ft: dict | None = None):
    pool = []
    reps = REALISATIONS if ft is None else ft["realisations"]
    for name in CASES:
        t0 = time.time()
        case = load_case(name, data)
        if ft is None:
            bif = synth.vessel_bifurcations(case.hu, case.lung, case.spacing, 400, rng)
        else:
            bif = synth.vessel_bifurcations(case.hu, case.lung, case.spacing, ft["bifurcations"], rng,
                                            min_mm=ft["bifurcation_min_mm"])
        hil = hilar(bif, case.lung)
        lung_pts = np.argwhere(case.lung)[:: 7]
        for _ in range(reps):
            hu, target, centres = realise(case, rng, ft)
            pool.append((hu, target, centres, bif, lung_pts, case.spacing, hil))
        log(f"{name}: grid {case.hu.shape}, lungs {case.lung.sum() * np.prod(case.spacing) / 1000:.0f} mL, "
            f"{len(bif)} bifurcations ({len(hil)} hilar), {sum(len(p[2]) for p in pool[-reps:])} nodules in "
            f"{reps} copies ({time.time() - t0:.0f} s)")
    return pool


def _fit(net, pool, rng, iterations: int, lr: float, ft: dict | None, log) -> list:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=iterations, pct_start=0.05)
    history = []
    t1 = time.time()
    run = 0.0
    for it in range(iterations):
        batch = [sample(pool, rng, ft) for _ in range(BATCH)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None]
        t = torch.from_numpy(np.stack([b[1] for b in batch]))[:, None]
        w = torch.from_numpy(np.stack([b[2] for b in batch]))[:, None]
        logits = net(x)
        bce = (F.binary_cross_entropy_with_logits(logits, t, pos_weight=torch.tensor(4.0), reduction="none") * w)
        bce = bce.sum() / w.sum().clamp(min=1)
        p = torch.sigmoid(logits) * w
        dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
        loss = bce + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        lv = float(loss.detach())
        run = 0.98 * run + 0.02 * lv if it else lv
        if (it + 1) % 50 == 0 or it == iterations - 1:
            history.append({"iteration": it + 1, "loss": round(run, 4), "seconds": round(time.time() - t1, 1)})
            log(f"it {it + 1}/{iterations} loss {run:.4f} ({time.time() - t1:.0f} s)")
    return history


def train(out: Path, iterations: int = FINETUNE["iterations"], threads: int = FINETUNE["threads"],
          data: Path = DATA, log=print, init: Path | None = None, stages: int = 2) -> dict:
    """Stage 1 (the original recipe, 1 thread, seed 14) unless ``init`` holds its weights, then stage 2
    (``FINETUNE``: ``iterations`` on ``threads`` threads).  ``stages=1`` stops after stage 1."""
    import torch

    from plugins.lung_nodules.network import NoduleNet
    from viewer.ai.models import load_state_dict

    summary = {"cases": list(CASES), "held_out": HELD_OUT, "patch": PATCH, "batch": BATCH}
    if init is None:
        torch.set_num_threads(1)
        torch.manual_seed(SEED)
        rng = np.random.default_rng(SEED)
        t0 = time.time()
        pool = build_pool(rng, data, log)
        prep_s = time.time() - t0
        net = NoduleNet()
        t1 = time.time()
        history = _fit(net, pool, rng, ITERATIONS if stages == 2 else iterations, LR, None, log)
        summary["stage1"] = {"realisations": REALISATIONS, "iterations": history[-1]["iteration"], "lr": LR,
                             "seed": SEED, "threads": 1, "nodules": sum(len(p[2]) for p in pool),
                             "prepare_s": round(prep_s, 1), "train_s": round(time.time() - t1, 1),
                             "history": history}
        del pool
    else:
        net = NoduleNet.from_state_dict(load_state_dict(Path(init)))
        summary["stage1"] = {"init": str(init), "iterations": ITERATIONS, "lr": LR, "seed": SEED, "threads": 1,
                             "note": "the stage-1 weights (commit 88b0c1a's weights.pt), trained by this "
                                     "script with --stages 1"}
    if stages == 2:
        ft = FINETUNE
        torch.set_num_threads(threads)
        torch.manual_seed(ft["seed"])
        rng = np.random.default_rng(ft["seed"])
        t0 = time.time()
        pool = build_pool(rng, data, log, ft)
        prep_s = time.time() - t0
        t1 = time.time()
        history = _fit(net, pool, rng, iterations, ft["lr"], ft, log)
        summary["stage2"] = {**{k: v for k, v in ft.items() if k != "iterations"}, "iterations": iterations,
                             "threads": threads, "nodules": sum(len(p[2]) for p in pool),
                             "hilar_bifurcations": sum(len(p[6]) for p in pool[:: ft["realisations"]]),
                             "prepare_s": round(prep_s, 1), "train_s": round(time.time() - t1, 1),
                             "history": history}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "weights.pt")
    ap.add_argument("--iterations", type=int, default=FINETUNE["iterations"],
                    help="stage-2 iterations (with --stages 1: stage-1 iterations)")
    ap.add_argument("--threads", type=int, default=FINETUNE["threads"], help="stage-2 threads")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--init", type=Path, default=None, help="stage-1 weights: skip stage 1 and fine-tune these")
    ap.add_argument("--stages", type=int, choices=(1, 2), default=2)
    ap.add_argument("--stage", choices=("fpr",), default=None,
                    help="fpr: train only the second-stage classifier on the network of --weights")
    ap.add_argument("--weights", type=Path, default=HERE / "weights.pt", help="the network (with --stage fpr)")
    ap.add_argument("--fpr-out", type=Path, default=Path("fpr.json"), help="where --stage fpr writes its classifier")
    a = ap.parse_args(argv)
    if a.stage == "fpr":
        print(json.dumps({k: v for k, v in train_fpr(a.fpr_out, a.weights, a.data,
                                                     log=lambda m: print(m, flush=True)).items()
                          if k in ("examples", "positives", "final_loss", "seconds")}))
        return
    iterations = a.iterations if a.stages == 2 or a.iterations != FINETUNE["iterations"] else ITERATIONS
    summary = train(a.out, iterations, a.threads, a.data, log=lambda m: print(m, flush=True), init=a.init,
                    stages=a.stages)
    (a.out.parent / "training_log.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "history"} if isinstance(v, dict) else v
                      for k, v in summary.items()}))


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------------------------
# Stage 3: the second-stage false-positive classifier (fpr.py) on the shipped network's candidates

FPR = {"seed": 21, "realisations": 4, "hidden": 16, "epochs": 600, "lr": 0.01, "weight_decay": 1e-3,
       "pos_weight": 4.0}


def fpr_scans(rng, det, data: Path = DATA, log=print, cases=None):
    """Training scans for the classifier: each training CT, ``FPR["realisations"]`` times filled with
    fresh nodules (the stage-2 recipe: many, mostly small), with the network's probability on it.
    Yields (name, hu float32, probability, lung, target uint8, centres, spacing)."""
    from scipy import ndimage

    for name in cases or CASES:
        case = load_case(name, data)
        near = ndimage.binary_dilation(case.lung, structure=lungmask.ball(4.0, case.spacing))
        for _ in range(FPR["realisations"]):
            t0 = time.time()
            hu, target, centres = realise(case, rng, FINETUNE)
            hu = hu.astype(np.float32)
            prob = det.probability(hu) * near
            log(f"{name}: {len(centres)} nodules, network {time.time() - t0:.0f} s")
            yield name, hu, prob, case.lung, target, centres, case.spacing


def fpr_examples(hu, prob, lung, target, centres, spacing):
    """The candidates of one training scan, their features, labels (1 nodule, 0 not; candidates on an
    ignored region are dropped) and the candidates themselves."""
    from scipy import ndimage

    from plugins.lung_nodules import fpr

    near = ndimage.binary_dilation(lung, structure=lungmask.ball(4.0, spacing))
    floor = fpr.background(prob, lung)
    cands = fpr.candidates(prob, spacing, near, floor)
    cands += fpr.image_candidates(hu, prob, spacing, lung, cands)
    keep, labels = [], []
    cc = np.array([c for c, _ in centres], float).reshape(-1, 3) * spacing
    rr = np.array([max(d / 2, 3.0) for _, d in centres])
    for d in cands:
        p = np.clip(np.rint(d["center_kji"]).astype(int), 0, np.array(target.shape) - 1)
        t = int(target[tuple(p)])
        if t == 2:
            continue
        hit = len(cc) and bool((np.linalg.norm(cc - np.asarray(d["center_kji"]) * spacing, axis=1) <= rr).any())
        keep.append(d)
        labels.append(1 if hit or t == 1 else 0)
    x = fpr.features(hu, prob, lung, spacing, keep, floor=floor)
    return x, np.asarray(labels, np.float32), keep


def fit_fpr(x: np.ndarray, y: np.ndarray, seed: int = FPR["seed"], log=print) -> dict:
    """The perceptron on standardised features (full batch, Adam, weighted BCE); its parameters."""
    import torch

    from plugins.lung_nodules import fpr

    torch.manual_seed(seed)
    mean = x.mean(0)
    std = x.std(0) + 1e-3
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], FPR["hidden"]), torch.nn.Tanh(),
                              torch.nn.Linear(FPR["hidden"], 1))
    opt = torch.optim.Adam(net.parameters(), lr=FPR["lr"], weight_decay=FPR["weight_decay"])
    lossf = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(FPR["pos_weight"]))
    for ep in range(FPR["epochs"]):
        opt.zero_grad()
        loss = lossf(net(xt)[:, 0], yt)
        loss.backward()
        opt.step()
        if (ep + 1) % 200 == 0:
            log(f"classifier epoch {ep + 1}: loss {float(loss.detach()):.4f}")
    w1, b1 = net[0].weight.detach().numpy().T, net[0].bias.detach().numpy()
    w2, b2 = net[2].weight.detach().numpy()[0], float(net[2].bias.detach())
    return {"features": list(fpr.FEATURES), "mean": mean.tolist(), "std": std.tolist(), "w1": w1.tolist(),
            "b1": b1.tolist(), "w2": w2.tolist(), "b2": b2, "final_loss": round(float(loss.detach()), 4)}


def train_fpr(out: Path, weights: Path = HERE / "weights.pt", data: Path = DATA, log=print) -> dict:
    """Stage 3: candidates and features on ``FPR["realisations"]`` fresh copies of each training CT,
    then the classifier; its parameters (with a summary) written to ``out`` as JSON."""
    import torch

    from plugins.lung_nodules.detect import Detector

    t0 = time.time()
    torch.set_num_threads(1)
    rng = np.random.default_rng(FPR["seed"])
    det = Detector(weights)
    xs, ys = [], []
    for name, hu, prob, lung, target, centres, sp in fpr_scans(rng, det, data, log):
        x, y, _ = fpr_examples(hu, prob, lung, target, centres, sp)
        xs.append(x)
        ys.append(y)
        log(f"{name}: {len(y)} candidates, {int(y.sum())} on nodules")
    x, y = np.concatenate(xs), np.concatenate(ys)
    params = fit_fpr(x, y, log=log)
    params.update({"recipe": FPR, "network": str(weights), "examples": int(len(y)), "positives": int(y.sum()),
                   "seconds": round(time.time() - t0, 1)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(params))
    return params
