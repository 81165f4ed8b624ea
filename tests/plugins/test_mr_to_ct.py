"""The MR-to-CT plugin: the real atlas method through the real worker on real head MR (CPU), the
Cormack-to-HU conversion, the SynthRAD metrics, and the trainer whose model the plugin then uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import viewer
from tests.conftest import data_path
from viewer.core.volume import Volume


def _registry():
    from viewer.ai.discovery import Registry

    return Registry(models=Path("/nonexistent-models"), entry_points=False)


@pytest.fixture(scope="module")
def host():
    from viewer.ai.host import AIHost

    h = AIHost(_registry(), device="cpu", threads=2)
    yield h
    h.shutdown()


def _every(vol: Volume, step: int, modality: str = "MR") -> Volume:
    """``vol`` with every ``step``-th row and column (a smaller real MR on a grid of its own)."""
    affine = vol.affine.copy()
    affine[:3, :2] *= step
    arr = np.ascontiguousarray(vol.array[:, ::step, ::step])
    return Volume(arr, affine, modality=modality, rescale=vol.rescale)


@pytest.fixture(scope="module")
def t1_small():
    data_path("mr-ct-templates", "scct.nii.gz")
    return _every(viewer.load(data_path("brain-mr-t1")), 4)  # 120 x 128 x 128, 1.64 x 1.64 x 1.5 mm


# ------------------------------------------------------------------------------ pure functions


def test_cormack_to_hu_at_its_breakpoints():
    from plugins.mr_to_ct.atlas import cormack_to_hu, hu_to_cormack

    # below c = 900: HU = c - 1024; 900..3100: 900 + (c - 900)/11 - 1024; above: (c - 900)/2 - 1024
    c = np.array([0.0, 500.0, 900.0, 2000.0, 3100.0, 3794.0, 5000.0])
    expected = np.array([-1024.0, -524.0, -124.0, -124.0 + 1100 / 11, 76.0, 1447.0 - 1024, 2050.0 - 1024])
    np.testing.assert_allclose(cormack_to_hu(c), expected, atol=1e-9)
    # continuous at both breakpoints, and the exact inverse of the stored transform
    for b in (900.0, 3100.0):
        assert abs(cormack_to_hu(b - 1e-6) - cormack_to_hu(b + 1e-6)) < 1e-3
    hu = np.linspace(-1024, 2500, 1001)
    np.testing.assert_allclose(cormack_to_hu(hu_to_cormack(hu)), hu, atol=1e-9)
    assert hu_to_cormack(-124.0) == 900.0 and hu_to_cormack(76.0) == 3100.0


def _thick_slice_dome(flip: bool = False):
    """A brain on 6.5 mm axial slices (widest on slice 2) with a 16 mm dark sulcus on slice 4 that
    the slice encloses but that opens to the brain's edge on slice 5 (the 3D fill cannot close it),
    and the same dark spot on slice 0, below the widest slice (where the skull base's bone lies
    between the lobes).  ``flip``: the slices stored top first.  (norm, head, spacing, top, bottom)."""
    shape, sp = (6, 96, 96), (6.5, 1.5, 1.5)
    k, j, i = np.indices(shape)
    r = np.hypot((j - 48) * 1.5, (i - 48) * 1.5)
    radius = np.array([50, 54, 58, 50, 40, 28])[:, None, None]
    norm = np.where(r < radius, 0.8, 0.0).astype(np.float32)
    sulcus = np.hypot((j - 48) * 1.5, (i - 60) * 1.5) < 8
    norm[4][sulcus[4]] = 0.2
    norm[5][sulcus[5] | ((i[5] > 60) & (np.abs(j[5] - 48) * 1.5 < 6))] = 0.2
    norm[0][sulcus[0]] = 0.2
    head = r < 66
    top, bottom = (4, 0)
    if flip:
        norm, head = np.ascontiguousarray(norm[::-1]), np.ascontiguousarray(head[::-1])
        top, bottom = 5 - top, 5 - bottom
    return norm, head, sp, top, bottom


@pytest.mark.parametrize("flip", [False, True])
def test_thick_slices_above_the_widest_fill_what_a_slice_of_brain_encloses(flip):
    """1.3.0: on brain-tumor-mr brain2 (6.5 mm slices) wide vertex sulci open to the next slice were
    left out of the MR's brain envelope and read as 130-900 HU 'bone' inside the cortex."""
    from plugins.mr_to_ct.atlas import brain_envelope, superior_along_thickest

    norm, head, sp, top, bottom = _thick_slice_dome(flip)
    sign = -1 if flip else 1
    env = {s: brain_envelope(norm, head, head.astype(np.float32), None, np.array([0.2, 0.5, 0.8]),
                             ("csf", "grey", "white"), sp, superior=s) for s in (0, sign)}
    assert env[sign][top, 48, 60] and not env[0][top, 48, 60]  # the vertex sulcus: brain, only with the rule
    assert not env[sign][bottom, 48, 60]  # below the widest slice the dark spot stays out (skull base)
    assert env[sign][2, 48, 48] and not env[sign][2, 5, 5]
    # the direction comes from the MR's affine: axial slices up or down, none for sagittal slices
    assert superior_along_thickest(np.diag([0.8, 0.8, 6.5, 1.0]), sp) == 1
    assert superior_along_thickest(np.diag([0.8, 0.8, -6.5, 1.0]), sp) == -1
    sagittal = np.array([[0, 0, 6.5, 0], [1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1.0]])
    assert superior_along_thickest(sagittal, sp) == 0


def test_the_vault_above_a_shorter_warped_atlas_gets_bone_not_its_air():
    """1.3.1: where the warped atlas' head ends below the patient's (the MPRAGE's vertex skull read
    -382 HU over 18% of its vault), the MR's dark rim above the brain's widest slice is bone; below
    it a dark pocket the atlas calls air (a sinus, a mastoid) stays air."""
    from plugins.mr_to_ct.atlas import refine

    sp, shape = (2.0, 2.0, 2.0), (48, 64, 64)
    k, j, i = np.indices(shape).astype(np.float32)
    r = np.sqrt(((k - 20) * 2) ** 2 + ((j - 32) * 2) ** 2 + ((i - 32) * 2) ** 2)  # widest at slice 20
    brain, skull, scalp, head = r < 40, (r >= 42) & (r < 50), (r >= 50) & (r < 56), r < 56
    norm = np.where(brain, 0.8, np.where(scalp, 1.0, 0.05)).astype(np.float32)
    norm[head & ~brain & ~scalp & (r < 42)] = 0.05  # the CSF over the cortex, dark as bone
    norm[brain & (r > 20) & (r < 30) & (i > 32)] = 0.55  # grey matter
    norm[brain & ((j - 32) ** 2 + (i - 32) ** 2 < 9) & (np.abs(k - 20) < 3)] = 0.2  # a ventricle
    atlas = np.where(brain, 35.0, np.where(skull, 700.0, np.where(head, 20.0, -1000.0))).astype(np.float32)
    atlas[((k - 20) * 2 > 30) & (r >= 30)] = -1000.0  # the atlas' head ends 14 mm below the patient's
    sinus = skull & (k < 12) & (i < 32)  # a pocket the atlas calls air, below the widest slice
    atlas[sinus] = -1000.0
    grey, white = (brain & (norm == 0.55)).astype(np.float32), (brain & (norm == 0.8)).astype(np.float32)
    csf = ((brain & (norm == 0.2)) | (head & ~brain & (r < 42))).astype(np.float32)
    depth = np.clip(56 - r, 0, None).astype(np.float32)
    hu = {s: refine(atlas, norm, head, grey, white, csf, ("csf", "grey", "white"), depth=depth, spacing=sp,
                    superior=s)[0] for s in (0, 1)}
    vertex = (k >= 37) & (r >= 44) & (r < 48) & (np.abs(j - 32) < 4) & (np.abs(i - 32) < 4)
    assert vertex.sum() > 50
    assert hu[0][vertex].mean() < -500 and hu[1][vertex].mean() > 800  # the atlas' air, then bone
    side = (np.abs(k - 20) < 2) & (r >= 44) & (r < 48)  # where the atlas has its skull: bone either way
    assert hu[0][side].mean() > 800 and hu[1][side].mean() > 800
    deep_sinus = sinus & (depth > 8)
    assert deep_sinus.sum() > 20 and hu[1][deep_sinus].mean() < -500  # below the widest slice: still air


def _rays_with_bone(hu: np.ndarray, head: np.ndarray, k: int, rays: int = 36, bone_hu: float = 600.0) -> float:
    """The share of ``rays`` rays from the head's centre on slice ``k`` that cross a voxel above ``bone_hu``
    inside the head (a skull continuous round the slice: 1)."""
    ys, xs = np.nonzero(head[k])
    r = np.arange(0.0, 400.0, 0.5)
    hits = []
    for t in np.linspace(0.0, 2 * np.pi, rays, endpoint=False):
        y = np.round(ys.mean() + r * np.sin(t)).astype(int)
        x = np.round(xs.mean() + r * np.cos(t)).astype(int)
        ok = (y >= 0) & (y < hu.shape[1]) & (x >= 0) & (x < hu.shape[2])
        y, x = y[ok], x[ok]
        inside = head[k, y, x]
        hits.append(bool(np.any(hu[k, y[inside], x[inside]] > bone_hu)))
    return float(np.mean(hits))


@pytest.mark.parametrize("case", [1, 2])
def test_a_thick_slice_t1_has_its_skull_round_the_upper_vault(case):
    """1.4.0: on the 6.5 mm-slice post-contrast T1s (brain-tumor-mr), the obliquely cut upper vault reads
    as bright as the scalp (the diploe's fat, the tables partial-volumed in) and the warped atlas' skull
    lay a centimetre inside the brain, so most of the vault had no bone: with 1.3.1, 31 % (brain1) and 34 %
    (brain2) of the rays from the head's centre crossed a voxel > 600 HU on the slices above the ventricles,
    down to 3 % and 0 % at the top.  Now the inner part of the skin-to-brain gap is bone: 93 % and 86 %, at
    least 86 % and 61 % on each slice."""
    from plugins.mr_to_ct import atlas

    data_path("mr-ct-templates", "scct.nii.gz")
    mr = viewer.load(data_path("brain-tumor-mr", f"brain{case}_image.nrrd"))
    mr.modality = "MR"
    syn = atlas.synthesize(mr)
    area = np.isin(syn.classes, (1, 2, 3)).sum(axis=(1, 2))  # the synthetic CT's brain, slice by slice
    widest = int(np.argmax(area))
    # above the ventricles: from two slices (13 mm) above the brain's widest slice to the last slice
    # holding at least a third of the widest one's area (the cap of the vertex is cut tangentially)
    top = int(np.nonzero(area >= area[widest] / 3)[0].max())
    shares = [_rays_with_bone(syn.hu, syn.head, k) for k in range(widest + 2, top + 1)]
    assert len(shares) >= 6, (widest, top)
    assert min(shares) >= 0.5 and np.mean(shares) >= 0.8, [round(x, 2) for x in shares]
    # the brain under it stays brain: no bone more than 15 mm inside the MR's head on those slices
    from scipy import ndimage

    deep = ndimage.distance_transform_edt(syn.head, sampling=tuple(float(s) for s in mr.spacing[::-1])) > 15.0
    upper = np.zeros(syn.head.shape, bool)
    upper[widest + 2: top + 1] = True
    assert np.mean(syn.hu[deep & upper] > 300) < 0.01


def test_synthrad_metrics_against_hand_computed_values():
    from plugins.mr_to_ct import evaluate

    ct = np.zeros((9, 9, 9))
    mask = np.zeros_like(ct, bool)
    mask[2:7, 2:7, 2:7] = True
    pred = ct.copy()
    pred[mask] = 100.0
    pred[~mask] = 500.0  # outside the mask: must not count
    assert evaluate.mae(ct, pred, mask) == pytest.approx(100.0)
    assert evaluate.psnr(ct, pred, mask) == pytest.approx(10 * np.log10(4024.0 ** 2 / 100.0 ** 2))
    # clipping to -1024..3000: a -2000 reference is -1024, a 5000 prediction is 3000
    ct2, pred2 = np.full((9, 9, 9), -2000.0), np.full((9, 9, 9), 5000.0)
    full = np.ones((9, 9, 9), bool)
    assert evaluate.mae(ct2, pred2, full) == pytest.approx(4024.0)
    assert evaluate.psnr(ct2, pred2, full) == pytest.approx(0.0, abs=1e-9)
    # SSIM of two uniform images is its luminance term: (2ab + C1) / (a^2 + b^2 + C1), values shifted by +1024
    a, b, c1 = 1024.0, 1124.0, (0.01 * 4024.0) ** 2
    assert evaluate.ssim(np.zeros((9, 9, 9)), np.full((9, 9, 9), 100.0), full) == \
        pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    rng = np.random.default_rng(0)
    noisy = rng.normal(0, 200, (12, 12, 12))
    full12 = np.ones(noisy.shape, bool)
    assert evaluate.ssim(noisy, noisy, full12) == pytest.approx(1.0)
    assert evaluate.ssim(noisy, noisy + rng.normal(0, 200, noisy.shape), full12) < 0.99


def test_evaluate_cli_on_files(tmp_path, capsys):
    from plugins.mr_to_ct import evaluate

    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    ct = np.zeros((8, 10, 10), np.int16)
    pred = ct + 40
    mask = np.ones(ct.shape, np.uint8)
    for name, arr in (("ct", ct), ("pred", pred), ("mask", mask)):
        viewer.save(Volume(arr, affine), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "m.json"
    assert evaluate.main([str(tmp_path / "pred.nii.gz"), str(tmp_path / "ct.nii.gz"), str(tmp_path / "mask.nii.gz"),
                          "--json", str(out)]) == 0
    assert "MAE" in capsys.readouterr().out
    result = json.loads(out.read_text())["mean"]
    assert result["mae"] == pytest.approx(40.0)
    assert result["psnr"] == pytest.approx(20 * np.log10(4024.0 / 40.0))
    assert evaluate.main(["only-two", "files"]) == 2


# ------------------------------------------------------------------------------ the real plugin


def test_manifest_and_card():
    info = _registry().get("mr-to-ct")
    assert info.task.value == "image-to-image" and "MR" in info.inputs[0].modalities
    params = {p.name: p for p in info.parameters}
    assert params["contrast"].choices == ("auto", "T1", "T2/FLAIR") and params["method"].default == "auto"
    card = info.card
    assert "same-subject" in card.limitations and "65-75 HU" in card.limitations and "100-150" in card.limitations
    assert "No model is trained and no weights ship" in card.training_data


@pytest.fixture(scope="module")
def t1_run(host, t1_small):
    """The real plugin through the real worker on the real T1 (once for the module): (result, progress)."""
    import dataclasses

    progress = []
    # a series description that names another contrast than the image shows (it reaches the plugin
    # through the worker; the plugin says so in a note)
    mr = dataclasses.replace(t1_small, source=dataclasses.replace(t1_small.source, series_description="AX FLAIR"))
    res = host.run("mr-to-ct", mr, {}, on_progress=lambda f, m: progress.append(f)).result(600)
    return res, progress


def test_synthetic_ct_of_a_real_t1_through_the_worker(t1_run, t1_small):
    from scipy import ndimage

    from plugins.mr_to_ct.atlas import head_mask_array

    mr = t1_small
    res, progress = t1_run
    img = res.images[0]
    # a derived CT on the MR's exact grid
    assert img.array.shape == mr.shape and img.array.dtype == np.int16
    np.testing.assert_allclose(img.affine, mr.affine)
    out = img.to_volume()
    np.testing.assert_allclose(out.spacing, mr.spacing)
    np.testing.assert_allclose(out.origin, mr.origin)
    np.testing.assert_allclose(out.direction, mr.direction)
    assert img.modality == "CT" and img.units == "HU"
    hu = img.array.astype(np.float32)
    # air around the head
    head = head_mask_array(mr.real_values(), tuple(mr.spacing[::-1]))
    far = ~ndimage.binary_dilation(head, iterations=3)
    assert far.sum() > 100_000 and np.mean(hu[far] == -1000) > 0.99
    # brain: the middle of the head at the level of the ventricles is brain-like
    kk, jj, ii = np.nonzero(head)
    k_top = kk.max()
    jc, ic = int(np.median(jj)), int(np.median(ii))
    core = hu[k_top - 60:k_top - 30, jc - 12:jc + 12, ic - 12:ic + 12]  # 45-90 mm below the top of the head
    assert 15 <= np.median(core) <= 45, np.median(core)
    assert np.mean((core > -20) & (core < 80)) > 0.8
    # skull: bone in the outer shell of the head
    inner = ndimage.binary_erosion(head, iterations=8)
    shell = head & ~inner
    assert hu.max() > 600 and np.mean(hu[shell] > 300) > 0.03
    assert np.mean(core > 300) < 0.01  # no bone inside the brain
    # the uncertainty heatmap, in HU
    hm = res.heatmaps[0]
    assert hm.kind == "uncertainty" and hm.unit == "HU" and hm.full_scale == 300.0
    assert hm.array.shape == mr.shape and 0 <= hm.array.min() and hm.array.max() <= 1
    assert hm.array[far].max() == 0 and np.mean(hm.array[shell]) > np.mean(hm.array[inner])
    assert any("T1" in n for n in res.notes) and any("Fused 2 atlases" in n for n in res.notes)
    assert any("series description names a T2/FLAIR" in n for n in res.notes), res.notes
    assert progress[-1] == pytest.approx(1.0) and len(progress) > 3


def test_contrast_named_by_a_series_description():
    from plugins.mr_to_ct.plugin import series_contrast

    assert series_contrast("t1_mpr_tra_gk_v4") == "T1" and series_contrast("AX T1 POST") == "T1"
    assert series_contrast("AX FLAIR") == "FLAIR" and series_contrast("T2_TSE_tra") == "FLAIR"
    assert series_contrast("") == "" and series_contrast("localizer") == "" and series_contrast("T1 T2 map") == ""


def test_tissue_classes_of_the_mrs_own_segmentation_read_plausible_hu(t1_run, t1_small):
    """The benchmark's tissue classes (the MR's own segmentation, not the plugin's) on the worker's
    synthetic CT of the real T1: its CSF (ventricles and sulci, the vertex included) reads CSF, not
    the atlas' tissue or bone (1.1.0: 44.6 HU on the full MPRAGE), brain reads brain, the vault's
    dark rim reads bone, the air around the head air."""
    from tests.benchmarks.bench_mr_to_ct import EXPECTED, own_classes

    hu = t1_run[0].images[0].array.astype(np.float32)
    cls = own_classes(t1_small)
    means = {t: float(hu[m].mean()) for t, m in cls.items()}
    assert all(cls[t].sum() > 1000 for t in ("air", "CSF", "brain", "skull")), {t: int(m.sum()) for t, m in cls.items()}
    for t, (lo, hi) in EXPECTED.items():
        if t == "CSF":  # this copy's 1.6 mm in-plane voxels (the full MPRAGE's: 0.4 mm) mix CSF with tissue more
            hi += 5.0
        assert lo <= means[t] <= hi, means
    # no bone in the MR's CSF (the vertex sulci under an affinely placed atlas skull)
    assert np.mean(hu[cls["CSF"]] > 300) < 0.02, means


def test_a_ct_is_refused_in_one_sentence(host):
    ct = viewer.load(data_path("ct-aorta", "ct_cropped.nii.gz"))
    from viewer.core.errors import HounsfieldError

    with pytest.raises(HounsfieldError) as err:
        host.run_sync("mr-to-ct", ct)
    assert "MR" in str(err.value) and "\n" not in str(err.value)


def test_trainer_on_a_synthrad_folder_and_the_plugin_uses_its_model(tmp_path, monkeypatch):
    import torch

    from plugins.mr_to_ct import phantoms, train
    from viewer.ai.host import AIHost

    data_path("mr-ct-templates", "scct.nii.gz")
    cases = phantoms.make_template_cases(tmp_path / "synthrad", n=2, spacing=(4.0, 4.0, 4.0))
    assert all((c / f).is_file() for c in cases for f in ("mr.nii.gz", "ct.nii.gz", "mask.nii.gz"))
    models = tmp_path / "models"
    out = train.train(tmp_path / "synthrad", models / "mr-to-ct" / "model.ts", iterations=6, batch=2, patch=32,
                      spacing=4.0, hold_out=[cases[1].name], log=lambda *_: None)
    log = json.loads(out.with_suffix(".log.json").read_text())
    assert log["trained_on"] == [cases[0].name] and log["held_out"] == [cases[1].name]
    ev = log["evaluation"][0]
    assert ev["mae"] > 0 and np.isfinite(ev["psnr"]) and -1 <= ev["ssim"] <= 1
    net = torch.jit.load(str(out))
    assert net.slices == 3 and net.spacing_mm == 4.0 and net.hu_scale == 1000.0

    monkeypatch.setenv("HOUNSFIELD_MODELS_DIR", str(models))  # the worker below is spawned with it
    mr = _every(viewer.load(data_path("brain-tumor-mr", "brain1_image.nrrd")), 2)  # 25 x 128 x 128
    h = AIHost(_registry(), device="cpu", threads=2)
    try:
        res = h.run_sync("mr-to-ct", mr, {"atlases": "matching"})
    finally:
        h.shutdown()
    img = res.images[0]
    assert "network" in img.name and img.array.shape == mr.shape
    np.testing.assert_allclose(img.affine, mr.affine)
    assert res.heatmaps[0].name == "Network vs atlas disagreement" and res.heatmaps[0].unit == "HU"
    assert any("model.ts" in n for n in res.notes)
    assert np.mean(img.array[:, :4, :4] == -1000) > 0.95  # air outside the head stays air


def test_contrast_read_off_the_image_on_a_flair_cut_off_at_the_back_and_its_t1c():
    """brats-0006 (BraTS, evaluation and tests only): its FLAIR's field of view cuts off the back of
    the head and a large tumour fills the ventricles' place; 1.0.0 took it for a T1 (its CSF read
    37 HU).  The unmixed white/grey ratio reads FLAIR there and T1 on the same case's T1c (its
    unmixed "CSF" is not the darkest: the tumour sits where the CSF prior lands, so the class order
    comes from the contrast), and no bone is put inside the MR's own (skull-stripped) brain."""
    from plugins.mr_to_ct import atlas

    case = data_path("brain-lesion-mr", "brats-0006")
    data_path("mr-ct-templates", "scct.nii.gz")
    brain = _every(viewer.load(case / "brainmask.nii.gz"), 2).array > 0
    seen = {}
    for name, want in (("Flair", "FLAIR"), ("T1c", "T1")):
        mr = _every(viewer.load(case / f"{name}_subtrMeanDivStd.nii.gz"), 2)  # 155 x 120 x 120, 2 mm in plane
        syn = atlas.synthesize(mr, atlases=("matching",))
        t = syn.tissue
        assert syn.contrast == want, (name, t)
        assert (t["white"] > t["grey"]) == (want == "T1"), t
        hu = syn.hu[brain & syn.head]
        assert np.mean(hu > 150) < 0.001 and 20 <= np.median(hu) <= 45, (name, np.median(hu))
        seen[name] = syn.classes[brain & syn.head]
    # the darkest tissue class (CSF, code 1) is a minority of the brain on both contrasts
    assert all(0.01 < np.mean(c == 1) < 0.35 for c in seen.values()), {k: np.mean(c == 1) for k, c in seen.items()}


def test_the_same_mr_gives_the_same_synthetic_ct_and_uncertainty(host):
    """A radiologist must get the same result from the same input.  Up to 1.4.0 two runs on the same MR
    differed: ITK's Mattes mutual information sums its joint histogram and gradient from its threads in
    whatever order they finish, so the registered transforms differed in their 8th digit, and the MR
    refinement's thresholds turned that into whole voxels of bone or air (the full MPRAGE: 17,318 voxels
    of the synthetic CT up to 1200 HU apart, the uncertainty everywhere by up to 0.004 HU; brain1: 7 voxels
    by 1 HU, 488,595 uncertainty voxels by up to 0.0006 HU).  The registration now runs on one thread
    (1.4.1), and everything after it is per-voxel or fixed-order, so the two runs must be bit-identical:
    no tolerance.  Two runs through the real worker on brain-tumor-mr brain1, every 2nd row and column."""
    data_path("mr-ct-templates", "scct.nii.gz")
    mr = _every(viewer.load(data_path("brain-tumor-mr", "brain1_image.nrrd")), 2)  # 25 x 128 x 128
    first, second = (host.run_sync("mr-to-ct", mr) for _ in range(2))
    np.testing.assert_array_equal(first.images[0].array, second.images[0].array)
    np.testing.assert_array_equal(first.heatmaps[0].array, second.heatmaps[0].array)
    assert np.count_nonzero(first.heatmaps[0].array) > 1000  # a real map, not an empty one
