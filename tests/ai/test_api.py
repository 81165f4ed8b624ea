"""Plugin API as data: parameters, input checks, manifests; geometry helpers used by model plugins."""

from __future__ import annotations

import json

import numpy as np
import pytest

from viewer.ai.api import InputSpec, Parameter, PluginInfo, Task
from viewer.ai.discovery import Registry, builtin_dir
from viewer.ai.inference import count_windows, from_model_axes, to_model_axes
from viewer.core.errors import HounsfieldError
from viewer.core.volume import Volume, affine_from


@pytest.mark.parametrize("param, given, expected", [
    (Parameter("d", "float", 0.25, minimum=0.05, maximum=1.0), "0.5", 0.5),
    (Parameter("n", "int", 3), "7", 7),
    (Parameter("b", "bool", True), "off", False),
    (Parameter("b", "bool", False), "yes", True),
    (Parameter("c", "choice", "a", choices=("a", "b")), "b", "b"),
    (Parameter("s", "str", ""), 12, "12"),
])
def test_parameters_coerce_command_line_strings(param, given, expected):
    assert param.coerce(given) == expected


@pytest.mark.parametrize("param, given, needle", [
    (Parameter("d", "float", 0.25, minimum=0.05, maximum=1.0, label="Dose"), "2", "between 0.05 and 1"),
    (Parameter("n", "int", 3), "three", "needs a whole number, not 'three'"),  # was 'needs a int value'
    (Parameter("b", "bool", True), "maybe", "needs yes or no, not 'maybe'"),
    (Parameter("x", "float", 1.0), "abc", "needs a number, not 'abc'"),
    (Parameter("c", "choice", "a", choices=("a", "b")), "z", "one of a, b"),
])
def test_bad_parameter_values_are_one_sentence(param, given, needle):
    with pytest.raises(HounsfieldError, match=needle) as err:
        param.coerce(given)
    assert str(err.value).endswith(".") and "\n" not in str(err.value)


def test_input_spec_checks_modality_and_spacing():
    vol = Volume(np.zeros((4, 8, 8), np.int16), affine_from((0.7, 0.7, 2.0), (0, 0, 0), np.eye(3)), modality="CT")
    assert InputSpec(modalities=("CT",), spacing_mm=(0.3, 5.0)).problem(vol) is None
    assert "MR" in InputSpec(modalities=("MR",)).problem(vol)
    assert "0.7" in InputSpec(spacing_mm=(1.0, 3.0)).problem(vol)


def test_builtin_manifest_round_trips_as_plain_data():
    manifest = json.loads((builtin_dir() / "ct_denoising" / "plugin.json").read_text())
    info = PluginInfo.from_dict(manifest)
    assert info.task is Task.IMAGE_TO_IMAGE and info.entry == "plugins.ct_denoising.plugin:CTDenoiser"
    again = PluginInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info
    assert info.resolve_params({"dose": "0.125"}) == {"dose": 0.125, "ensemble": 0, "heatmap": True}


def test_broken_manifests_do_not_break_discovery(tmp_path):
    (tmp_path / "bad.ts").write_bytes(b"x")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "odd.onnx").write_bytes(b"x")
    (tmp_path / "odd.json").write_text(json.dumps({"task": "painting"}))
    reg = Registry(models=tmp_path, entry_points=False)
    ids = [p.id for p in reg.plugins()]
    assert "ct-denoising" in ids and all(p.source == "built-in" for p in reg.plugins())  # none of the broken files
    assert len(reg.problems) == 2 and all("was skipped" in p for p in reg.problems)
    with pytest.raises(HounsfieldError, match="There is no AI plugin 'x'"):
        reg.get("x")


def test_compatible_plugins_follow_the_input():
    reg = Registry(models=None, entry_points=False)
    ct = Volume(np.zeros((4, 8, 8), np.int16), np.eye(4), modality="CT")
    mr = Volume(np.zeros((4, 8, 8), np.int16), np.eye(4), modality="MR")
    assert "ct-denoising" in [p.id for p in reg.compatible(ct)]
    assert "ct-denoising" not in [p.id for p in reg.compatible(mr)]


@pytest.mark.parametrize("direction", [
    np.eye(3),                                    # axial LPS
    np.diag([-1.0, -1.0, 1.0]),                   # axial RAS-stored (as NIfTI from some tools)
    np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]),  # coronal
])
def test_model_axes_are_ras_and_round_trip(direction):
    affine = affine_from((1.0, 1.0, 1.0), (0, 0, 0), direction)
    arr = np.arange(4 * 5 * 6).reshape(4, 5, 6)  # [k, j, i]
    ras = to_model_axes(arr, affine)
    vol = Volume(arr, affine)
    # voxel ras[x, y, z] must lie further Right/Anterior/Superior as x/y/z grow (LPS: -x, -y, +z)
    idx = np.argwhere(arr == ras[1, 0, 0])[0]
    idx0 = np.argwhere(arr == ras[0, 0, 0])[0]
    step = vol.index_to_lps(idx[::-1]) - vol.index_to_lps(idx0[::-1])
    assert step[0] < 0 and abs(step[1]) < 1e-9 and abs(step[2]) < 1e-9
    idx = np.argwhere(arr == ras[0, 0, 1])[0]
    step = vol.index_to_lps(idx[::-1]) - vol.index_to_lps(idx0[::-1])
    assert step[2] > 0
    assert np.array_equal(from_model_axes(ras[None], affine)[0], arr)


def test_window_count_matches_monai():
    import torch
    from monai.inferers import sliding_window_inference

    calls = []
    image = torch.zeros(1, 1, 70, 50, 33)
    sliding_window_inference(image, (32, 32, 32), 1, lambda x: (calls.append(1), x)[1], overlap=0.25)
    assert count_windows((70, 50, 33), (32, 32, 32), 0.25) == len(calls)


def test_a_segment_code_is_the_core_code_and_old_scheme_first_tuples_still_work():
    from viewer.ai.api import LabelMap, Results, Segment
    from viewer.core.ai_results import convert_results
    from viewer.core.codes import Code

    bone = Code("3138006", "SCT", "Bone")
    assert Segment(1, "Bone", code=bone).code == bone
    # API 1 documented (scheme, value, meaning): a plain tuple in that order means the same code
    legacy = Segment(1, "Bone", code=("SCT", "3138006", "Bone"))
    assert isinstance(legacy.code, Code) and legacy.code == bone
    vol = Volume(np.zeros((2, 3, 4), np.int16), affine_from((1, 1, 1), (0, 0, 0), np.eye(3)), modality="CT")
    labels = np.zeros(vol.shape, np.uint8)
    labels[0, 1, 1] = 1
    conv = convert_results(Results(label_maps=[LabelMap(labels, vol.affine.copy(), [legacy])]), vol)
    assert conv.segmentations[0].segments[0].type == bone  # the segment's type, in the core's order
