"""Models from the user's models folder: TorchScript + descriptor, MONAI bundles, and refusals."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests.ai.conftest import (
    UNET_DEF,
    Evil,
    make_registry,
    threshold_torchscript,
    train_unet,
    write_bundle,
    write_descriptor,
)
from viewer.ai.discovery import scan_models
from viewer.core.errors import HounsfieldError


@pytest.fixture(scope="module")
def models_folder(tmp_path_factory, aorta_ct):
    root = tmp_path_factory.mktemp("models")
    threshold_torchscript(root / "threshold.ts")
    write_descriptor(root / "threshold.ts", id="threshold-ts")
    write_bundle(root / "bundle_ts", "ts")
    unet = train_unet(aorta_ct)
    write_bundle(root / "bundle_pt", "pt", unet)
    (root / "orphan.ts").write_bytes(b"not a model")  # no descriptor: listed as a problem
    return root, unet


@pytest.fixture(scope="module")
def models_host(models_folder):
    from viewer.ai.host import AIHost

    h = AIHost(make_registry(models_folder[0]), device="cpu", threads=2, stall_timeout=120)
    yield h
    h.shutdown()


def test_models_folder_is_discovered_from_json_only(models_folder):
    found, problems = scan_models(models_folder[0])
    ids = {p.id: p for p in found}
    assert set(ids) == {"threshold-ts", "bundle/test-bundle-ts", "bundle/test-bundle-pt"}
    assert ids["bundle/test-bundle-pt"].entry == "model:state_dict"
    assert ids["bundle/test-bundle-ts"].entry == "model:torchscript"
    assert ids["bundle/test-bundle-pt"].task.value == "segmentation"
    assert ids["bundle/test-bundle-pt"].inputs[0].modalities == ("CT",)
    assert "gradcam" in ids["bundle/test-bundle-pt"].explainers
    assert "gradcam" not in ids["threshold-ts"].explainers  # TorchScript has no hooks for GradCAM
    assert ids["threshold-ts"].card.training_data.startswith("none")
    assert any("orphan.ts" in p and "descriptor" in p for p in problems)


def _agreement(a, b) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


@pytest.mark.parametrize("plugin", ["threshold-ts", "bundle/test-bundle-ts"])
def test_torchscript_model_segments_real_ct(models_host, aorta_ct, plugin):
    results = models_host.run_sync(plugin, aorta_ct)
    lm = results.label_maps[0]
    assert lm.array.shape == aorta_ct.shape
    np.testing.assert_allclose(lm.affine, aorta_ct.affine)
    # the hand-set network labels HU > 0: checks intensity scaling, axis order and back
    assert _agreement(lm.array.astype(bool), aorta_ct.array > 0) > 0.9999
    assert [s.name for s in lm.segments] == ["above 0 HU" if plugin == "threshold-ts" else "above zero"]
    hm = results.heatmaps[0]
    assert hm.kind == "probability" and hm.array.shape == aorta_ct.shape
    assert np.mean((hm.array > 0.5) == (aorta_ct.array > 0)) > 0.999


def test_bundle_with_state_dict_matches_monai(models_host, models_folder, aorta_ct):
    """The host's pipeline gives what MONAI itself gives on the RAS-ordered array."""
    import torch
    from monai.inferers import sliding_window_inference

    results = models_host.run_sync("bundle/test-bundle-pt", aorta_ct, {"explain": "gradcam"})
    labels = results.label_maps[0].array
    unet = models_folder[1]
    x = np.clip((aorta_ct.array.astype(np.float32) + 1000) / 2000, 0, 1)
    ras = np.ascontiguousarray(np.flip(np.flip(x.transpose(2, 1, 0), 0), 1))  # LPS [k,j,i] -> RAS [x,y,z]
    with torch.no_grad():
        out = sliding_window_inference(torch.from_numpy(ras)[None, None], (64, 64, 64), 2, unet, overlap=0.25)
    ref_ras = out[0].argmax(0).numpy()
    ref = np.flip(np.flip(ref_ras, 0), 1).transpose(2, 1, 0)
    assert labels.shape == aorta_ct.shape
    assert _agreement(labels, ref) > 0.999
    assert 0.05 < labels.mean() < 0.95  # the trained network finds structure, not a constant
    assert _agreement(labels.astype(bool), aorta_ct.array > 0) > 0.8
    hm = results.heatmaps[0]
    assert hm.kind == "gradcam" and hm.array.shape == aorta_ct.shape
    assert hm.array.max() > 0.5 and 0.0 <= hm.array.min()


def test_occlusion_explains_around_the_finding(models_host, aorta_ct):
    results = models_host.run_sync("threshold-ts", aorta_ct, {"explain": "occlusion"})
    hm = results.heatmaps[0]
    assert hm.kind == "occlusion" and hm.array.shape == aorta_ct.shape
    assert hm.array.max() == pytest.approx(1.0)
    # occluding bright (HU > 0) tissue lowers the 'above zero' score: the map sits on such tissue
    hot = hm.array > 0.5
    assert hot.any() and np.mean(aorta_ct.array[hot] > 0) > np.mean(aorta_ct.array > 0)


def test_pickled_code_is_refused(tmp_path, aorta_ct):
    import torch

    from viewer.ai import models
    from viewer.ai.host import AIHost

    marker = tmp_path / "code-ran"
    bundle = write_bundle(tmp_path / "models" / "evil", "pt", unet=torch.nn.Linear(1, 1))
    torch.save({"weight": torch.zeros(1), "payload": Evil(str(marker))}, bundle / "models" / "model.pt")
    plain = tmp_path / "models" / "evil2.pt"
    torch.save(Evil(str(marker)), plain)
    plain.with_suffix(".json").write_text(json.dumps({"task": "segmentation", "network": UNET_DEF}))
    with pytest.raises(HounsfieldError, match="refused"):
        models.load_state_dict(bundle / "models" / "model.pt")
    host = AIHost(make_registry(tmp_path / "models"), device="cpu", threads=1)
    try:
        for plugin in ("bundle/test-bundle-pt", "model/evil2"):
            with pytest.raises(HounsfieldError, match="refused: it holds pickled Python objects") as err:
                host.run_sync(plugin, aorta_ct)
            assert "\n" not in str(err.value)
    finally:
        host.shutdown()
    assert not marker.exists()


def test_bundle_configs_cannot_name_arbitrary_callables():
    from viewer.ai import models

    with pytest.raises(HounsfieldError, match="not a MONAI network"):
        models.monai_network({"_target_": "os.system", "command": "true"})
    with pytest.raises(HounsfieldError, match="expression"):
        models.monai_network({**UNET_DEF, "channels": "$__import__('os').getcwd()"})


def test_onnx_without_onnxruntime_says_so(tmp_path, aorta_ct):
    if importlib.util.find_spec("onnxruntime") is not None:
        pytest.skip("onnxruntime is installed here; this checks the message shown without it")
    from viewer.ai.host import AIHost

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "net.onnx").write_bytes(b"\x08\x07")
    write_descriptor(folder / "net.onnx", id="net-onnx")
    host = AIHost(make_registry(folder), device="cpu", threads=1)
    try:
        with pytest.raises(HounsfieldError, match="onnxruntime, which is not installed"):
            host.run_sync("net-onnx", aorta_ct)
    finally:
        host.shutdown()


def test_entry_point_plugins_are_found(tmp_path):
    """A distribution registering ``hounsfield.plugins`` = 'pkg:hounsfield.json' is discovered."""
    import subprocess
    import sys

    pkg = tmp_path / "acme_ai"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('plugin code must not be imported by discovery')\n")
    (pkg / "hounsfield.json").write_text(json.dumps({"id": "acme-nodules", "name": "Acme nodules", "version": "2.0",
                                                    "task": "detection", "entry": "acme_ai.plugin:Nodules"}))
    dist = tmp_path / "acme_ai-2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ai\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text("[hounsfield.plugins]\nacme = acme_ai:hounsfield.json\n")
    code = ("from viewer.ai.discovery import Registry; r = Registry(); p = r.get('acme-nodules'); "
            "print(p.task.value, p.source, p.version)")
    repo = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{tmp_path}:{repo}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["detection", "entry", "point", "acme-ai", "2.0"]


def test_slice_by_slice_image_to_image_model(tmp_path, aorta_ct):
    """A 2D TorchScript model (identity) run slice by slice: intensity window in and out, axes, grid."""
    import torch

    from viewer.ai.host import AIHost

    folder = tmp_path / "models"
    folder.mkdir()
    conv = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    torch.jit.trace(conv.eval(), torch.zeros(1, 1, 8, 8)).save(str(folder / "identity.pt"))
    write_descriptor(folder / "identity.pt", id="identity-2d", task="image-to-image", dims=2, roi_size=[64, 64])
    host = AIHost(make_registry(folder), device="cpu", threads=1)
    try:
        results = host.run_sync("identity-2d", aorta_ct)
    finally:
        host.shutdown()
    img = results.images[0]
    assert img.array.shape == aorta_ct.shape
    np.testing.assert_allclose(img.affine, aorta_ct.affine)
    np.testing.assert_allclose(img.array, np.clip(aorta_ct.array, -1000, 1000), atol=0.05)
    assert results.heatmaps[0].array.shape == aorta_ct.shape
