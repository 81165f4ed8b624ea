"""Train the 2.5D MR-to-CT U-Net on a site's own paired MR and CT (SynthRAD layout).

    python -m plugins.mr_to_ct.train DATA_DIR [--out MODEL.ts] [--iterations 20000] [--spacing 2.0]
           [--batch 8] [--patch 64] [--seed 0] [--threads 1] [--hold-out CASE ...]

DATA_DIR holds one folder per case with ``mr.nii.gz``, ``ct.nii.gz`` (HU) and ``mask.nii.gz`` (the
body), the MR and CT registered to each other on one grid, as the SynthRAD2023/2025 challenge
data are.  The default output is ``<models folder>/mr-to-ct/model.ts``, where the mr-to-ct plugin
finds it: it then runs the network and reports where it and the atlas method disagree.

Each case is resampled onto an isotropic ``--spacing`` grid in its own orientation, the MR
normalised as the plugin does (``atlas.normalise``), the CT clipped to -1024..3000 HU; the network
learns HU/1000 of a slice from three neighbouring MR slices (L1 inside the body mask) on random
patches.  Held-out cases (``--hold-out``) are never trained on; their SynthRAD MAE/PSNR/SSIM
(``evaluate.py``) are written to the log beside the model.  Fixed seeds: the same data and
arguments give the same model on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HU_MIN, HU_MAX = -1024.0, 3000.0


def load_case(folder: Path, spacing: float) -> dict:
    """One case on the isotropic working grid: normalised MR, CT in HU, body mask (arrays [k, j, i])."""
    import SimpleITK as sitk

    import viewer
    from plugins.mr_to_ct import atlas
    from viewer.core.formats import sitk_from_volume

    mr, ct, mask = (viewer.load(folder / f"{n}.nii.gz") for n in ("mr", "ct", "mask"))
    if mr.shape != ct.shape or mr.shape != mask.shape:
        raise viewer.HounsfieldError(f"Case {folder.name}: mr, ct and mask must share one grid.")
    body = np.asarray(mask.array) > 0
    norm = atlas.normalise(mr.real_values(), body)
    mr_img = sitk_from_volume(viewer.Volume(norm, mr.affine))
    grid = atlas.working_grid(mr_img, spacing)
    ct_img = sitk_from_volume(viewer.Volume(np.clip(np.asarray(ct.real_values(), np.float32), HU_MIN, HU_MAX),
                                            ct.affine))
    ct_g = sitk.GetArrayFromImage(sitk.Resample(ct_img, grid, sitk.Transform(), sitk.sitkLinear, HU_MIN,
                                                sitk.sitkFloat32))
    m_g = sitk.GetArrayFromImage(sitk.Resample(sitk_from_volume(viewer.Volume(body.astype(np.uint8), mr.affine)),
                                               grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0
    return {"name": folder.name, "mr": sitk.GetArrayFromImage(grid).astype(np.float32), "ct": ct_g, "mask": m_g}


def find_cases(data_dir: Path) -> list[Path]:
    cases = sorted(p for p in Path(data_dir).iterdir()
                   if p.is_dir() and all((p / f"{n}.nii.gz").is_file() for n in ("mr", "ct", "mask")))
    if not cases:
        from viewer.core.errors import HounsfieldError

        raise HounsfieldError(f"{data_dir} holds no case folders with mr.nii.gz, ct.nii.gz and mask.nii.gz.")
    return cases


def _patches(cases: list[dict], rng: np.random.Generator, batch: int, patch: int, slices: int):
    half = slices // 2
    x = np.zeros((batch, slices, patch, patch), np.float32)
    y = np.full((batch, 1, patch, patch), HU_MIN / 1000.0, np.float32)
    w = np.zeros((batch, 1, patch, patch), np.float32)
    for b in range(batch):
        c = cases[rng.integers(len(cases))]
        pts = c["points"]
        k, j, i = pts[rng.integers(len(pts))]
        j0, i0 = j - patch // 2, i - patch // 2
        kk = np.clip(np.arange(k - half, k + half + 1), 0, c["mr"].shape[0] - 1)
        sj = slice(max(j0, 0), min(j0 + patch, c["mr"].shape[1]))
        si = slice(max(i0, 0), min(i0 + patch, c["mr"].shape[2]))
        dj, di = sj.start - j0, si.start - i0
        hj, hi = sj.stop - sj.start, si.stop - si.start
        x[b, :, dj:dj + hj, di:di + hi] = c["mr"][kk][:, sj, si]
        y[b, 0, dj:dj + hj, di:di + hi] = c["ct"][k, sj, si] / 1000.0
        w[b, 0, dj:dj + hj, di:di + hi] = c["mask"][k, sj, si]
        if rng.random() < 0.5:  # left-right flips (heads are nearly symmetric)
            x[b], y[b], w[b] = x[b, :, :, ::-1], y[b, :, :, ::-1], w[b, :, :, ::-1]
        x[b] *= np.float32(rng.uniform(0.85, 1.15))  # intensity scale: other scanners, other bias
    return x, y, w


def predict_volume(net, mr_norm: np.ndarray, device: str = "cpu", batch: int = 8, check=None) -> np.ndarray:
    """HU of every slice of a normalised MR array [k, j, i] on the network's grid."""
    import torch

    slices = int(getattr(net, "slices", 3))
    scale = float(getattr(net, "hu_scale", 1000.0))
    half = slices // 2
    depth, rows, cols = mr_norm.shape
    pr, pc = (-rows) % 4, (-cols) % 4
    padded = np.pad(mr_norm.astype(np.float32), ((half, half), (0, pr), (0, pc)), mode="edge")
    out = np.empty(mr_norm.shape, np.float32)
    for k0 in range(0, depth, batch):
        if check is not None:
            check()
        k1 = min(k0 + batch, depth)
        x = np.stack([padded[k:k + slices] for k in range(k0, k1)])
        with torch.inference_mode():
            y = net(torch.from_numpy(x).to(device)).float().cpu().numpy()
        out[k0:k1] = y[:, 0, :rows, :cols] * scale
    return np.clip(out, HU_MIN, HU_MAX)


def train(data_dir, out=None, *, iterations: int = 20000, spacing: float = 2.0, batch: int = 8, patch: int = 64,
          seed: int = 0, threads: int = 1, hold_out=(), width: int = 16, lr: float = 1e-3, log=print) -> Path:
    import torch

    from plugins.mr_to_ct import evaluate
    from plugins.mr_to_ct.network import SynthNet
    from viewer.paths import models_dir

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    out = Path(out) if out else models_dir() / "mr-to-ct" / "model.ts"
    out.parent.mkdir(parents=True, exist_ok=True)
    folders = find_cases(Path(data_dir))
    held = [f for f in folders if f.name in set(hold_out)]
    train_f = [f for f in folders if f.name not in set(hold_out)]
    if not train_f:
        from viewer.core.errors import HounsfieldError

        raise HounsfieldError("Every case is held out; leave at least one to train on.")
    cases = [load_case(f, spacing) for f in train_f]
    for c in cases:
        c["points"] = np.argwhere(c["mask"])
    log(f"training on {len(cases)} case(s) ({', '.join(c['name'] for c in cases)}), "
        f"holding out {len(held)} ({', '.join(f.name for f in held) or 'none'})")
    net = SynthNet(width=width, spacing_mm=spacing)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iterations, 1), eta_min=lr * 0.05)
    t0 = time.perf_counter()
    history = []
    for it in range(1, iterations + 1):
        x, y, w = _patches(cases, rng, batch, patch, net.slices)
        x, y, w = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)
        pred = net(x)
        loss = (torch.abs(pred - y) * w).sum() / w.sum().clamp_min(1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % max(1, iterations // 20) == 0 or it == iterations:
            history.append({"iteration": it, "l1_hu": loss.item() * 1000, "seconds": time.perf_counter() - t0})
            log(f"iteration {it}/{iterations}: L1 {loss.item() * 1000:.1f} HU")
    net.eval()
    scripted = torch.jit.script(net)
    scripted.save(str(out))
    report = {"data": str(data_dir), "trained_on": [c["name"] for c in cases], "held_out": [f.name for f in held],
              "iterations": iterations, "spacing_mm": spacing, "batch": batch, "patch": patch, "seed": seed,
              "width": width, "seconds": round(time.perf_counter() - t0, 1), "history": history, "evaluation": []}
    for f in held:
        c = load_case(f, spacing)
        pred = predict_volume(net, c["mr"])
        report["evaluation"].append({"case": f.name, **evaluate.metrics(c["ct"], pred, c["mask"])})
        log(f"held-out {f.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in report["evaluation"][-1].items()
                                               if k != "case"))
    out.with_suffix(".log.json").write_text(json.dumps(report, indent=2))
    log(f"saved {out}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plugins.mr_to_ct.train", description=__doc__.splitlines()[0])
    ap.add_argument("data", help="folder of case folders with mr.nii.gz, ct.nii.gz, mask.nii.gz")
    ap.add_argument("--out", help="TorchScript file to write (default: <models folder>/mr-to-ct/model.ts)")
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--spacing", type=float, default=2.0, help="isotropic grid (mm) the network works on")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hold-out", nargs="*", default=[], help="case folder names never trained on (evaluated)")
    a = ap.parse_args(argv)
    from viewer.core.errors import HounsfieldError

    try:
        train(a.data, a.out, iterations=a.iterations, spacing=a.spacing, batch=a.batch, patch=a.patch,
              seed=a.seed, threads=a.threads, hold_out=a.hold_out, width=a.width)
    except HounsfieldError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
