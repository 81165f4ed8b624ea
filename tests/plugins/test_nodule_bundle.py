"""Bring your own nodule model (plugins/lung_nodules/bundle.py): a MONAI detection bundle in the
model-zoo lung_nodule_ct_detection layout, with a randomly initialised RetinaNet of the zoo's
architecture (no pretrained weights are reachable), found in the models folder and run through
the real worker on a small real CT crop; the boxes must come back in LPS on the right grid."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import data_path

PATCH = [48, 48, 16]  # the zoo's is 512 x 512 x 192; one small window here keeps the test fast on a CPU


def zoo_style_config(patch=PATCH, backbone="resnet50") -> dict:
    """An inference.json shaped like the model-zoo bundle's: expressions for the backbone, the
    feature extractor and the detector's settings, the LUNA16 switches, pre- and postprocessing."""
    return {
        "whether_raw_luna16": False,
        "whether_resampled_luna16": "$(not @whether_raw_luna16)",
        "imports": ["$import glob", "$import os"],
        "bundle_root": "./",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "amp": True,
        "infer_patch_size": list(patch),
        "anchor_generator": {"_target_": "monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape",
                             "feature_map_scales": [1, 2, 4],
                             "base_anchor_shapes": [[6, 8, 4], [8, 6, 5], [10, 10, 6]]},
        "backbone": f"$monai.networks.nets.resnet.{backbone}(spatial_dims=3,n_input_channels=1,"
                    "conv1_t_stride=[2,2,1],conv1_t_size=[7,7,7])",
        "feature_extractor": "$monai.apps.detection.networks.retinanet_network.resnet_fpn_feature_extractor("
                             "@backbone,3,False,[1,2],None)",
        "network_def": {"_target_": "RetinaNet", "spatial_dims": 3, "num_classes": 1, "num_anchors": 3,
                        "feature_extractor": "@feature_extractor", "size_divisible": [16, 16, 8]},
        "network": "$@network_def.to(@device)",
        "detector": {"_target_": "RetinaNetDetector", "network": "@network", "anchor_generator": "@anchor_generator",
                     "debug": False},
        "detector_ops": [
            "$@detector.set_target_keys(box_key='box', label_key='label')",
            "$@detector.set_box_selector_parameters(score_thresh=0.02,topk_candidates_per_level=1000,"
            "nms_thresh=0.22,detections_per_img=300)",
            "$@detector.set_sliding_window_inferer(roi_size=@infer_patch_size,overlap=0.25,sw_batch_size=1,"
            "mode='constant',device='cpu')"],
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image", "_disabled_": "@whether_raw_luna16"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [0.703125, 0.703125, 1.25],
             "_disabled_": "@whether_resampled_luna16"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1024.0, "a_max": 300.0, "b_min": 0.0,
             "b_max": 1.0, "clip": True},
            {"_target_": "EnsureTyped", "keys": "image"}]},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "ClipBoxToImaged", "box_keys": "box", "label_keys": "label", "box_ref_image_keys": "image",
             "remove_empty": True},
            {"_target_": "AffineBoxToWorldCoordinated", "box_keys": "box", "box_ref_image_keys": "image",
             "affine_lps_to_ras": True},
            {"_target_": "ConvertBoxModed", "box_keys": "box", "src_mode": "xyzxyz", "dst_mode": "cccwhd"}]},
    }


METADATA = {"version": "0.1.1", "task": "CT lung nodule detection", "name": "Test nodule detector",
            "description": "A randomly initialised RetinaNet in the lung_nodule_ct_detection layout (tests only).",
            "intended_use": "Tests only.",
            "network_data_format": {
                "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "CT", "num_channels": 1,
                                     "spatial_shape": ["16*n", "16*n", "8*n"]}},
                "outputs": {"pred": {"type": "object", "format": "dict", "num_channels": 1,
                                     "spatial_shape": ["n", "n", "n"]}}}}


folder_net: dict = {}  # the network each bundle folder was saved from (spares reloading it)


@pytest.fixture(scope="module")
def bundle_folder(tmp_path_factory):
    import torch

    from plugins.lung_nodules.bundle import build_network, read_detection_config

    models = tmp_path_factory.mktemp("models")
    folder = models / "lung_nodule_ct_detection"
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "configs" / "inference.json").write_text(json.dumps(zoo_style_config(), indent=1))
    (folder / "configs" / "metadata.json").write_text(json.dumps(METADATA))
    torch.manual_seed(0)
    net = build_network(read_detection_config(folder))
    torch.save(net.state_dict(), folder / "models" / "model.pt")
    folder_net[folder] = net.eval()
    return folder


@pytest.fixture(scope="module")
def crop():
    """A small crop of the real chest CT round the right-lung tumour, with its own LPS affine."""
    import viewer

    vol = viewer.load(data_path("chest-ct"))
    k0, j0, i0 = 72, 238, 150  # 10 x 32 x 34 voxels: 44 x 46 x 15 at the bundle's spacing
    arr = np.ascontiguousarray(vol.array[k0:k0 + 10, j0:j0 + 32, i0:i0 + 34])
    affine = vol.affine.copy()
    affine[:3, 3] = vol.index_to_lps([i0, j0, k0])
    return viewer.Volume(arr, affine, modality="CT")


def test_config_is_read_as_data():
    from plugins.lung_nodules.bundle import _call
    from viewer.core.errors import HounsfieldError

    assert _call({}, "$monai.networks.nets.resnet.resnet50(spatial_dims=3)", {"resnet50"})[2] == {"spatial_dims": 3}
    with pytest.raises(HounsfieldError, match="not among the calls"):
        _call({}, "$__import__('os').system('true')", {"resnet50"})
    with pytest.raises(HounsfieldError, match="not a plain value"):
        _call({}, "$monai.networks.nets.resnet.resnet50(spatial_dims=len('abc'))", {"resnet50"})


def test_zoo_settings_are_taken_from_the_config(bundle_folder):
    from plugins.lung_nodules.bundle import read_detection_config

    cfg = read_detection_config(bundle_folder)
    assert cfg.backbone == "resnet50" and cfg.backbone_kwargs["conv1_t_stride"] == [2, 2, 1]
    assert cfg.spacing_mm == [0.703125, 0.703125, 1.25] and cfg.axcodes == "RAS"
    assert cfg.intensity == {"a_min": -1024.0, "a_max": 300.0, "b_min": 0.0, "b_max": 1.0, "clip": True}
    assert cfg.roi_size == PATCH and cfg.overlap == 0.25 and cfg.mode == "constant"
    assert (cfg.score_thresh, cfg.nms_thresh, cfg.detections_per_img) == (0.02, 0.22, 300)
    assert cfg.network["size_divisible"] == [16, 16, 8] and cfg.anchor["feature_map_scales"] == [1, 2, 4]


def test_boxes_come_back_in_lps_on_the_right_grid(bundle_folder, crop):
    """Direct call: every box centre maps into the crop, and the model grid is the bundle's."""
    from plugins.lung_nodules.bundle import detect

    dets, info = detect(crop.real_values(), crop.affine, bundle_folder, score_threshold=1e-6,
                        network=folder_net[bundle_folder])
    assert len(dets) > 5
    # the model grid: RAS at the bundle's spacing, covering the crop
    a = np.asarray(info["model_affine_ras"])
    assert np.allclose(np.abs(np.diag(a)[:3]), [0.703125, 0.703125, 1.25])
    assert a[0, 0] > 0 and a[1, 1] > 0 and a[2, 2] > 0  # RAS axes
    extent_mm = np.asarray(crop.shape[::-1]) * crop.spacing
    assert np.allclose(np.asarray(info["model_shape"]) * [0.703125, 0.703125, 1.25], extent_mm, atol=1.3)
    # independent arithmetic for the box centres: model voxel (RAS) -> crop voxel -> LPS
    for d in dets:
        box = np.asarray(d["box_model"])
        u = (box[:3] + box[3:]) / 2
        # Spacing keeps voxel 0's centre; Orientation RAS flips i (LPS x) and j (LPS y) of this axial crop
        scale = np.array([0.703125, 0.703125, 1.25]) / crop.spacing
        ijk = u * scale
        ijk[0] = crop.shape[2] - 1 - ijk[0]
        ijk[1] = crop.shape[1] - 1 - ijk[1]
        lps = crop.index_to_lps(ijk)
        assert np.allclose(d["center_lps"], lps, atol=1e-3)
        back = crop.lps_to_index(d["center_lps"])
        assert np.all(back > -0.5 - 1e-6) and np.all(back < np.asarray(crop.shape[::-1]) - 0.5 + 1e-6), back
        assert all(s > 0 for s in d["size_mm"]) and 0 < d["score"] <= 1


def test_bundle_runs_through_the_real_worker(bundle_folder, crop):
    from viewer.ai.api import Task
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    reg = Registry(models=bundle_folder.parent, entry_points=False, builtins=False)
    info = reg.get("bundle/test-nodule-detector")
    assert info.task == Task.DETECTION and info.entry == "plugins.lung_nodules.bundle:DetectionBundle"
    assert not reg.problems
    host = AIHost(reg, device="cpu", threads=2)
    try:
        res = host.run_sync(info.id, crop, {"score_threshold": 1e-6})
    finally:
        host.shutdown()
    assert len(res.detections) > 5
    lo = crop.index_to_lps([-0.5, -0.5, -0.5])
    hi = crop.index_to_lps(np.asarray(crop.shape[::-1]) - 0.5)
    for d in res.detections:
        c = np.asarray(d.center_lps)
        assert np.all(c >= np.minimum(lo, hi) - 1e-3) and np.all(c <= np.maximum(lo, hi) + 1e-3)
    assert any("detections at score" in n for n in res.notes)
