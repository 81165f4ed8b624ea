"""Train the nodule detector on real chest CT with synthetic nodules inserted into real lung.

    python plugins/lung_nodules/train.py                      # ~20 min on 1 CPU thread
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
on the nodule masks.  Everything is seeded; the weights are a plain ``state_dict``.
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


def realise(case: Case, rng) -> tuple[np.ndarray, np.ndarray, list]:
    """One copy of ``case`` with random nodules: (int16 HU, uint8 target: 1 nodule, 2 ignore, nodules)."""
    hu = case.hu.copy()
    lung_ml = float(case.lung.sum() * np.prod(case.spacing)) / 1000
    n = int(np.clip(round(lung_ml / 120), 3, 25))
    size = (3.0, 30.0) if case.hu.shape[0] * case.spacing[0] >= 60 else (3.0, 10.0)
    nods = synth.insert_random_nodules(hu, case.lung, case.spacing, n, rng, thickness_mm=case.thickness,
                                       taken=case.lesion > 0, size_mm=size)
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


def sample(pool, rng):
    """One training patch (input float32, target float32, weight float32) from the pool."""
    from scipy import ndimage

    item = pool[rng.integers(len(pool))]
    hu, target, centres, bif, lung_pts, spacing = item
    r = rng.random()
    if r < 0.55 and centres:
        c, d = centres[rng.integers(len(centres))]
        jitter = np.array([6.0, 14.0, 14.0]) * (1.0 if d < 20 else 0.5)
        centre = np.asarray(c) + rng.uniform(-1, 1, 3) * jitter / spacing
    elif r < 0.8 and len(bif):
        centre = bif[rng.integers(len(bif))] + rng.uniform(-2, 2, 3)
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


def build_pool(rng, data: Path = DATA, log=print):
    pool = []
    for name in CASES:
        t0 = time.time()
        case = load_case(name, data)
        bif = synth.vessel_bifurcations(case.hu, case.lung, case.spacing, 400, rng)
        lung_pts = np.argwhere(case.lung)[:: 7]
        for _ in range(REALISATIONS):
            hu, target, centres = realise(case, rng)
            pool.append((hu, target, centres, bif, lung_pts, case.spacing))
        log(f"{name}: grid {case.hu.shape}, lungs {case.lung.sum() * np.prod(case.spacing) / 1000:.0f} mL, "
            f"{len(bif)} bifurcations, {sum(len(p[2]) for p in pool[-REALISATIONS:])} nodules in "
            f"{REALISATIONS} copies ({time.time() - t0:.0f} s)")
    return pool


def train(out: Path, iterations: int = ITERATIONS, threads: int = 1, data: Path = DATA, log=print) -> dict:
    import torch
    import torch.nn.functional as F

    from plugins.lung_nodules.network import NoduleNet

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    t0 = time.time()
    pool = build_pool(rng, data, log)
    prep_s = time.time() - t0
    net = NoduleNet()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=iterations, pct_start=0.05)
    history = []
    t1 = time.time()
    run = 0.0
    for it in range(iterations):
        batch = [sample(pool, rng) for _ in range(BATCH)]
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
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    summary = {"cases": list(CASES), "held_out": HELD_OUT, "realisations": REALISATIONS, "patch": PATCH,
               "batch": BATCH, "iterations": iterations, "lr": LR, "seed": SEED, "threads": threads,
               "nodules": sum(len(p[2]) for p in pool), "prepare_s": round(prep_s, 1),
               "train_s": round(time.time() - t1, 1), "history": history}
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "weights.pt")
    ap.add_argument("--iterations", type=int, default=ITERATIONS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args(argv)
    summary = train(a.out, a.iterations, a.threads, a.data, log=lambda m: print(m, flush=True))
    (a.out.parent / "training_log.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))


if __name__ == "__main__":
    main()
