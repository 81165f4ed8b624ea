"""The CT denoising plugin: the real network through the real worker on real CT (CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import viewer
from tests.conftest import REPO, data_path
from viewer.core.errors import HounsfieldError

PLUGIN = REPO / "plugins" / "ct_denoising"
CHEST_I0 = 7.36e5  # photons/ray at the chest CT's own dose (lowdose.calibrate_i0; see training_log.json)


@pytest.fixture(scope="module")
def chest():
    return viewer.load(data_path("chest-ct"))


@pytest.fixture(scope="module")
def host():
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    h = AIHost(Registry(models=Path("/nonexistent-models"), entry_points=False), device="cpu", threads=2)
    yield h
    h.shutdown()


def _wait_until(cond, timeout=120):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_manifest_declares_the_plugin_and_its_model_card():
    from viewer.ai.discovery import Registry

    info = Registry(models=Path("/nonexistent-models"), entry_points=False).get("ct-denoising")
    assert info.task.value == "image-to-image" and info.inputs[0].modalities == ("CT",)
    dose = {p.name: p for p in info.parameters}["dose"]
    # blind by default: 0 measures the noise on the image; a dose in (0, 1] overrides it
    assert dose.default == 0.0 and dose.kind == "float" and dose.minimum == 0.0 and dose.maximum == 1.0
    card = info.card
    for needle in ("chest-ct", "example_ct", "invesalius", "0.5, 0.25 and 0.125", "ct-aorta", "Poisson"):
        assert needle in card.training_data, needle
    assert "no CUDA GPU" in card.limitations
    for needle in ("radiomics-lung1", "LIDC-IDRI-0002", "lone slices"):
        assert needle in card.training_data, needle
    # the bench's figures (tests/benchmarks/bench_denoise.py): blind PSNR per image beside the best oracle-tuned
    # baseline; every image says whether it was trained on, and the held-out CT is ahead of the best baseline
    import re

    psnr = [f for f in card.evaluation if f.metric == "PSNR, network blind (no dose given)"]
    assert len(psnr) >= 5
    for f in psnr:
        assert "never trained on" in f.dataset or "in the training data" in f.dataset, f.dataset
    held = [f for f in psnr if f.dataset.startswith("ct-aorta")]
    assert len(held) == 1 and "never trained on" in held[0].dataset
    baseline = float(re.search(r"best baseline \S+(?: \S+)? ([0-9.]+) dB", held[0].note).group(1))
    assert held[0].value > baseline
    unseen = [f for f in psnr if "never trained on" in f.dataset]
    assert len(unseen) >= 4  # the held-out CT and lone slices from scanners never trained on


def test_weights_are_small_and_load_without_pickled_code():
    import torch

    from plugins.ct_denoising.network import DenoiseNet

    weights = PLUGIN / "weights.pt"
    assert weights.stat().st_size < 5 * 2**20
    state = torch.load(weights, weights_only=True)
    net = DenoiseNet.from_state_dict(state)  # shaped from the tensors, then loaded strictly
    assert net.state_dict().keys() == state.keys()  # every tensor present, none extra
    assert 50_000 < sum(p.numel() for p in net.parameters()) < 2_000_000


def test_a_grown_network_starts_as_the_one_it_grew_from():
    """train.py --grow N appends identity-initialised residual blocks: before training the grown network gives
    the shipped one's output exactly, and its weights load back into a network of the grown shape."""
    import torch

    from plugins.ct_denoising.network import DenoiseNet

    state = torch.load(PLUGIN / "weights.pt", weights_only=True)
    net, grown = DenoiseNet.from_state_dict(state).eval(), DenoiseNet.from_state_dict(state).grow(1).eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.2, (2, 4, 32, 32)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(net(x), grown(x))
    again = DenoiseNet.from_state_dict(grown.state_dict())
    assert len(again.res) == len(grown.res) == (len(net.res) if net.res is not None else 0) + 1


def test_denoises_the_real_chest_ct_through_the_worker(host, chest):
    progress = []
    results = host.run("ct-denoising", chest, {"dose": 0.25},
                       on_progress=lambda f, m: progress.append(f)).result(600)
    img = results.images[0]
    assert img.array.shape == chest.shape and img.array.dtype == np.int16
    np.testing.assert_allclose(img.affine, chest.affine)
    assert img.modality == "CT" and img.units == "HU"
    hm = results.heatmaps[0]
    assert hm.kind == "removed-noise" and hm.array.shape == chest.shape and hm.array.dtype == np.float32
    assert 0.0 <= hm.array.min() and hm.array.max() <= 1.0
    # the colour bar counts HU removed: 1.0 in the map stands for full_scale HU, not "relative, 0-1"
    from plugins.ct_denoising.plugin import HEATMAP_FULL_SCALE_HU

    assert hm.unit == "HU" and hm.display_unit == "HU" and hm.full_scale == HEATMAP_FULL_SCALE_HU > 1
    assert results.provenance["device"] == "cpu"
    assert results.provenance["plugin_version"] == json.loads((PLUGIN / "plugin.json").read_text())["version"]
    assert progress[-1] == pytest.approx(1.0) and len(progress) > 3
    # the anatomy stays: air stays air, soft tissue stays soft tissue (a mean over the body)
    body = chest.array > -500
    assert abs(float(img.array[body].mean()) - float(chest.array[body].mean())) < 15
    assert np.mean(img.array[chest.array < -950] < -900) > 0.99


def _simulated_quarter_dose(hu_slices: np.ndarray, pixel_mm: float, i0: float, seed: int) -> np.ndarray:
    from plugins.ct_denoising import lowdose

    return np.stack([lowdose.simulate_slice(s, pixel_mm, 0.25, i0, np.random.default_rng([seed, n]))
                     for n, s in enumerate(hu_slices)])


def test_noise_is_reduced_on_a_simulated_quarter_dose_slice(host, chest):
    pytest.importorskip("skimage")
    from scipy import ndimage

    clean = chest.array[69:72].astype(np.float32)
    noisy = _simulated_quarter_dose(clean, float(chest.spacing[0]), CHEST_I0, seed=7)
    vol = viewer.Volume(np.rint(noisy).astype(np.int16), chest.affine, modality="CT")
    out = host.run_sync("ct-denoising", vol, {"dose": 0.25}).images[0].array[1].astype(np.float32)
    body = ndimage.binary_erosion(clean[1] > -500, iterations=5)
    rmse_in = np.sqrt(np.mean((noisy[1] - clean[1])[body] ** 2))
    rmse_out = np.sqrt(np.mean((out - clean[1])[body] ** 2))
    assert rmse_in > 25  # the simulation really is noisy
    assert rmse_out < 0.6 * rmse_in


@pytest.fixture(scope="module")
def aorta_quarter_dose():
    """Seven slices of the held-out CT (never trained on) and the same at simulated quarter dose."""
    pytest.importorskip("skimage")
    from plugins.ct_denoising import lowdose

    aorta = viewer.load(data_path("ct-aorta", "ct_cropped.nii.gz"))
    clean = aorta.array[78:85].astype(np.float32)
    i0 = lowdose.calibrate_i0(aorta.array, float(aorta.spacing[0]), n_slices=3)
    noisy = _simulated_quarter_dose(clean, float(aorta.spacing[0]), i0, seed=11)
    return aorta, clean, noisy


def _mse(a, b):
    return float(np.mean((np.clip(a, -1000, 1000) - np.clip(b, -1000, 1000)) ** 2))


def test_beats_a_gaussian_filter_tuned_on_the_held_out_slices_themselves(host, aorta_quarter_dose):
    """Quality on slices of the held-out CT against an oracle-tuned Gaussian, blind and at the true dose;
    blind (no dose given, the default) comes within 0.3 dB of being told the true dose."""
    from scipy import ndimage

    aorta, clean, noisy = aorta_quarter_dose
    vol = viewer.Volume(np.rint(noisy).astype(np.int16), aorta.affine, modality="CT")
    told = host.run_sync("ct-denoising", vol, {"dose": 0.25, "heatmap": False}).images[0]
    blind = host.run_sync("ct-denoising", vol, {"heatmap": False}).images[0]
    assert "blind" in blind.name and "noise" in blind.description
    inner = np.s_[1:-1]  # edge slices lack one neighbour
    best_gauss = min(_mse(ndimage.gaussian_filter(noisy, (sz, s, s))[inner], clean[inner])
                     for s in (0.5, 0.75, 1.0, 1.5) for sz in (0, 0.7))
    mse_told = _mse(told.array[inner].astype(np.float32), clean[inner])
    mse_blind = _mse(blind.array[inner].astype(np.float32), clean[inner])
    assert mse_told < best_gauss < _mse(noisy[inner], clean[inner])
    assert mse_blind < best_gauss
    assert 10 * np.log10(mse_blind / mse_told) < 0.3  # dB lost by not knowing the dose


def test_blind_noise_estimate_matches_the_inserted_noise():
    """On a water phantom the estimate is the noise's true std; on a real CT (LIDC slice, GE) at quarter
    dose it is the original's own noise and the inserted noise added in quadrature, and it grows as the
    dose falls."""
    pytest.importorskip("skimage")
    from plugins.ct_denoising import lowdose
    from plugins.ct_denoising.noise import condition_from_noise, slice_noise_hu

    yy, xx = np.mgrid[:160, :160]
    r = np.hypot(yy - 80, xx - 80)
    water = np.where(r < 70, 40.0, -1000.0).astype(np.float32)
    noisy = lowdose.simulate_slice(water, 1.0, 0.25, 1e6, np.random.default_rng(1))
    true = float(np.std((noisy - water)[r < 60]))
    assert slice_noise_hu(noisy) == pytest.approx(true, rel=0.15)
    assert np.isnan(slice_noise_hu(np.full((64, 64), -1000.0)))  # no soft tissue: nothing to measure on

    lidc = viewer.load(data_path("lung-nodule-ct", "lidc-idri-0002"))
    px = float(lidc.spacing[0])
    clean = lidc.real_values()[6].astype(np.float32)[96:416, 96:416]  # the body, cropped to keep radon quick
    i0 = lowdose.calibrate_i0(lidc.real_values()[:, 96:416, 96:416], px, n_slices=3)
    own = slice_noise_hu(clean)
    est = {}
    for dose in (0.5, 0.25):
        low = lowdose.simulate_slice(clean, px, dose, i0, np.random.default_rng(2))
        est[dose] = slice_noise_hu(low)
        tissue = (clean > -200) & (clean < 700)
        truth = np.hypot(own, float(np.std((low - clean)[tissue])))
        assert est[dose] == pytest.approx(truth, rel=0.25), dose
    assert own < est[0.5] < est[0.25]
    c = condition_from_noise(np.array([own, est[0.5], est[0.25]]))
    assert np.all(np.diff(c) > 0) and 0.5 < c[2] < 1.6  # near the network's quarter-dose setting (1)


def test_a_single_slice_and_a_two_slice_slab_are_denoised_not_made_worse(host, aorta_quarter_dose):
    """A lone real CT slice (no neighbours for the 2.5D input) and a 2-slice slab, blind: the noise
    goes down, and the lone slice comes close to the same slice denoised inside its volume."""
    aorta, clean, noisy = aorta_quarter_dose
    k = 3
    one = viewer.Volume(np.rint(noisy[k:k + 1]).astype(np.int16), aorta.affine, modality="CT")
    res = host.run_sync("ct-denoising", one)
    out = res.images[0].array
    assert out.shape == (1, *clean.shape[1:]) and res.heatmaps[0].array.shape == out.shape
    mse_in = _mse(noisy[k], clean[k])
    mse_one = _mse(out[0].astype(np.float32), clean[k])
    assert mse_one < 0.75 * mse_in  # at least 1.2 dB better than the noisy slice
    vol = viewer.Volume(np.rint(noisy).astype(np.int16), aorta.affine, modality="CT")
    in_volume = host.run_sync("ct-denoising", vol, {"heatmap": False}).images[0].array[k].astype(np.float32)
    assert 10 * np.log10(mse_one / _mse(in_volume, clean[k])) < 0.6  # dB lost without neighbours
    two = viewer.Volume(np.rint(noisy[k:k + 2]).astype(np.int16), aorta.affine, modality="CT")
    out2 = host.run_sync("ct-denoising", two, {"heatmap": False}).images[0].array.astype(np.float32)
    for n in range(2):
        assert _mse(out2[n], clean[k + n]) < 0.75 * _mse(noisy[k + n], clean[k + n])


def test_self_ensemble_views_are_a_parameter(host, aorta_quarter_dose):
    """``ensemble``: views (rotations, mirrorings) averaged.  On a lone slice of the held-out CT the default
    (all 8) beats a single view; a 2-view run of the 7-slice slab keeps the shape and still removes noise;
    more than 8 is refused in one sentence."""
    aorta, clean, noisy = aorta_quarter_dose
    k = 3
    one = viewer.Volume(np.rint(noisy[k:k + 1]).astype(np.int16), aorta.affine, modality="CT")
    runs = {n: host.run_sync("ct-denoising", one, {"ensemble": n, "heatmap": False}) for n in (0, 1)}
    mse = {n: _mse(r.images[0].array[0].astype(np.float32), clean[k]) for n, r in runs.items()}
    assert mse[0] < mse[1] < _mse(noisy[k], clean[k])
    # the run records what "0" stood for: the views it averaged and the noise it measured
    used = runs[0].provenance["effective_parameters"]
    assert used["ensemble"] == 8 and used["dose"].startswith("measured, noise ")
    assert runs[0].provenance["parameters"]["ensemble"] == 0
    assert runs[1].provenance["effective_parameters"]["ensemble"] == 1
    slab = viewer.Volume(np.rint(noisy).astype(np.int16), aorta.affine, modality="CT")
    two = host.run_sync("ct-denoising", slab, {"ensemble": 2, "heatmap": False}).images[0].array.astype(np.float32)
    assert two.shape == clean.shape and _mse(two, clean) < 0.75 * _mse(noisy, clean)
    with pytest.raises(HounsfieldError) as err:
        host.run_sync("ct-denoising", one, {"ensemble": 9})
    assert "between 0 and 8" in str(err.value) and "\n" not in str(err.value)


def test_default_views_fill_the_chest_ct_budget_and_no_more():
    """``ensemble`` 0: all 8 views on a slice, a thin slab and a small volume (the held-out CT), 2 on the
    512x512x141 chest CT and on anything larger, 4 on half of it: no volume does more work than the chest CT's
    two views, and none fewer than two views."""
    from plugins.ct_denoising.plugin import ENSEMBLE_VOXELS, default_views

    assert default_views((1, 128, 128)) == default_views((8, 512, 512)) == default_views((164, 126, 120)) == 8
    assert default_views((141, 512, 512)) == default_views((400, 512, 512)) == 2
    assert default_views((70, 512, 512)) == 4
    for shape in ((9, 512, 512), (70, 512, 512), (164, 126, 120), (141, 512, 512)):
        assert np.prod(shape) * default_views(shape) <= ENSEMBLE_VOXELS


def test_blind_mapping_does_not_take_a_quiet_scan_for_a_full_dose_one():
    """The 0.43 mm smooth-kernel head slice (Hitachi, never trained on) at simulated quarter dose reads only
    5-7 HU of noise; the blind mapping (fitted on the training volumes) still gives a noise input near the
    true dose's (c = 1), not the 0.61 of 1.3.0's mapping."""
    pytest.importorskip("skimage")
    from pydicom.data import get_testdata_file

    from plugins.ct_denoising import lowdose
    from plugins.ct_denoising.noise import condition_from_noise, slice_noise_hu

    head = viewer.load(Path(get_testdata_file("J2K_pixelrep_mismatch.dcm")))
    a = head.real_values().astype(np.float32)
    px = float(head.spacing[0])
    i0 = lowdose.calibrate_i0(a, px, n_slices=1)
    crop = np.s_[112:400, 112:400]
    low = lowdose.simulate_slice(a[0], px, 0.25, i0, np.random.default_rng(5))[crop]
    sigma = slice_noise_hu(low)
    assert 3 < sigma < 10 and slice_noise_hu(a[0][crop]) < sigma
    assert 0.8 < float(condition_from_noise(sigma)) < 1.2


def test_cancel_a_real_run(host, chest):
    host.run_sync("ct-denoising", viewer.Volume(chest.array[:3], chest.affine, modality="CT"))  # warm
    pid = host.worker_pid
    handle = host.run("ct-denoising", chest)
    _wait_until(lambda: handle.progress[0] > 0.05 or handle.done())
    handle.cancel()
    assert handle.wait(60)
    assert handle.state == "cancelled"
    with pytest.raises(HounsfieldError, match="cancelled"):
        handle.result()
    # the plugin checks Cancel between slice batches, so the worker did not need killing
    assert not handle.worker_restarted and host.worker_pid == pid


def test_kill_the_worker_mid_run_and_recover(host, chest):
    host.run_sync("ct-denoising", viewer.Volume(chest.array[:3], chest.affine, modality="CT"))
    pid = host.worker_pid
    handle = host.run("ct-denoising", chest)
    _wait_until(lambda: handle.progress[0] > 0.05 or handle.done())
    os.kill(pid, signal.SIGKILL)
    assert handle.wait(60)
    assert handle.state == "failed" and "killed" in handle.error and "\n" not in handle.error
    small = viewer.Volume(chest.array[60:63], chest.affine, modality="CT")
    out = host.run_sync("ct-denoising", small)
    assert out.images[0].array.shape == small.shape and host.worker_pid not in (None, pid)


def test_headless_run_writes_nifti_and_json(tmp_path, capsys):
    from viewer.cli import main

    src = data_path("ct-aorta", "ct_cropped.nii.gz")
    out = tmp_path / "out"
    code = main(["run", "ct-denoising", str(src), "--out", str(out), "--device", "cpu", "--param", "dose=0.5"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "results.json").read_text())
    assert manifest["plugin"]["id"] == "ct-denoising"
    assert manifest["provenance"]["device"] == "cpu" and manifest["provenance"]["parameters"]["dose"] == 0.5
    files = {r["kind"]: r["file"] for r in manifest["results"]}
    original = viewer.load(src)
    denoised = viewer.load(out / files["image"])
    assert denoised.shape == original.shape
    np.testing.assert_allclose(denoised.affine, original.affine, atol=1e-4)
    heat = viewer.load(out / files["heatmap"])
    assert heat.shape == original.shape and 0 <= heat.array.min() and heat.array.max() <= 1


def test_headless_bad_parameter_is_one_sentence(capsys):
    from viewer.cli import main

    assert main(["run", "ct-denoising", str(data_path("ct-aorta", "ct_cropped.nii.gz")), "--out", "/tmp/x",
                 "--param", "dose=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hounsfield: ") and "between 0 and 1" in err and "\n" not in err


def test_training_refuses_the_held_out_ct(tmp_path):
    from plugins.ct_denoising import data

    with pytest.raises(data.HeldOutError):
        data.load_training_volume(data.HELD_OUT)
    with pytest.raises(data.HeldOutError):  # nor resampled to finer or coarser pixels (train.py --fine-pixel)
        data.load_training_volume(data.HELD_OUT + "@0.45mm")
    copy = tmp_path / "renamed.nii.gz"
    shutil.copy(data_path("ct-aorta", "ct_cropped.nii.gz"), copy)
    with pytest.raises(data.HeldOutError):
        data.refuse_held_out(data._from_viewer(copy, "a copy"), copy)
    converted = tmp_path / "converted.nrrd"
    viewer.save(viewer.load(copy), converted)  # other file, same voxels
    with pytest.raises(data.HeldOutError):
        data.refuse_held_out(data._from_viewer(converted, "a conversion"), converted)


def test_training_refuses_the_bench_slices():
    """The extra single training slices (data.MORE_SLICES, train.py --more-slices) come from pydicom-data; the
    bench's unseen slices (CT_small, the Hitachi head, ...) are refused by patient, whichever package has them."""
    pytest.importorskip("pydicom.data")
    from plugins.ct_denoising import data

    for name in ("CT_small.dcm", "J2K_pixelrep_mismatch.dcm"):
        with pytest.raises(data.HeldOutError):
            data.load_training_volume("pydicom-data:" + name)
    assert not any("693_" in n or "CT_small" in n for n in data.MORE_SLICES)


def test_training_simulation_on_the_coarse_projector_inserts_the_same_noise():
    """train.py draws its low-dose slices from line integrals projected on a 2x coarser grid (4x faster);
    on a real slice (LIDC, GE) the noise it inserts has the std of the full-grid simulation's."""
    pytest.importorskip("skimage")
    from plugins.ct_denoising import data, lowdose

    lidc = viewer.load(data_path("lung-nodule-ct", "lidc-idri-0002"))
    clean = lidc.real_values()[6].astype(np.float32)[128:384, 128:384]
    px = float(lidc.spacing[0])
    full = lowdose.line_integrals(clean, px)
    coarse = lowdose.line_integrals(clean, px, coarse=2)
    assert coarse.shape == full.shape
    assert np.median(np.abs(coarse - full)) < 0.02 * full.max()
    stds = [float(np.std(lowdose.inserted_noise(p, clean.shape, px, 0.25, 1e6, np.random.default_rng(s))[clean > -500]))
            for p in (full, coarse) for s in (1, 2)]
    assert np.mean(stds[2:]) == pytest.approx(np.mean(stds[:2]), rel=0.05)
    assert "lung-nodule-ct/lidc-idri-0002" in data.TRAINING and data.HELD_OUT not in data.TRAINING


def test_fine_pixel_training_volumes_are_interpolated_not_blocky():
    """train.py --fine-pixel adds volumes interpolated to 0.45 mm pixels (data.FINE_PIXEL): a real slice on
    the 2x finer grid keeps its HU and its shape, and is smooth between the original pixels (cubic, not
    nearest-neighbour blocks)."""
    pytest.importorskip("skimage")
    from plugins.ct_denoising import data

    lidc = viewer.load(data_path("lung-nodule-ct", "lidc-idri-0002"))
    crop = lidc.real_values()[6:7, 200:264, 200:264].astype(np.int16)
    px = float(lidc.spacing[0])
    fine = data.resample_in_plane(data.CTVolume("crop", crop, px, 1.25), px / 2)
    assert fine.pixel_mm == pytest.approx(px / 2) and fine.hu.shape == (1, 128, 128) and fine.hu.dtype == np.int16
    assert abs(float(fine.hu.mean()) - float(crop.mean())) < 3.0
    # neighbouring fine pixels differ: no 2x2 blocks of equal values
    assert np.mean(fine.hu[0, 0::2, :] == fine.hu[0, 1::2, :]) < 0.2
    assert all("@" in n and float(n.rsplit("@", 1)[1].removesuffix("mm")) < 0.5 for n in data.FINE_PIXEL)
