"""Prompts (points, a box, in LPS mm) in the plugin API: declared in the manifest, checked by the
host (points off the volume dropped with a note), passed to the plugin through the real worker as
``context.prompts``, recorded in provenance; ``hounsfield run --point/--box/--modality`` parsing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import viewer
from viewer.ai.api import Box, LabelMap, PluginInfo, Point, Prompts, Results, Segment, check_prompts
from viewer.core.errors import HounsfieldError


def _volume(shape=(10, 20, 30), spacing=(0.5, 0.5, 2.0), origin=(-5.0, -5.0, 10.0)):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return viewer.Volume(np.zeros(shape, np.int16), affine, modality="CT")


class EchoPrompts:
    """A promptable test plugin: labels the voxel under each positive point and the box."""

    def run(self, inputs, params, context):
        vol = inputs["image"]
        out = np.zeros(vol.shape, np.uint8)
        inv = np.linalg.inv(vol.affine)
        for p in context.prompts.points:
            i, j, k = np.rint((inv @ np.array([*p.lps, 1.0]))[:3]).astype(int)
            out[k, j, i] = 1 if p.positive else 2
        if context.prompts.box is not None:
            lo = np.rint((inv @ np.array([*context.prompts.box.lo_lps, 1.0]))[:3]).astype(int)
            hi = np.rint((inv @ np.array([*context.prompts.box.hi_lps, 1.0]))[:3]).astype(int)
            out[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] |= 4
        return Results(label_maps=[LabelMap(out, vol.affine, [Segment(1, "pos"), Segment(2, "neg"),
                                                              Segment(4, "box")])])


def _echo_info(prompts=("points", "box")) -> PluginInfo:
    return PluginInfo.from_dict({"id": "echo-prompts", "name": "Echo prompts", "version": "1", "task": "segmentation",
                                 "entry": "tests.ai.test_prompts:EchoPrompts", "prompts": list(prompts)},
                                source="test")


@pytest.fixture(scope="module")
def prompt_host():
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    reg = Registry(models=Path("/nonexistent-models"), entry_points=False)
    reg.add(_echo_info())
    reg.add(PluginInfo.from_dict({"id": "no-prompts", "name": "No prompts", "version": "1", "task": "segmentation",
                                  "entry": "tests.ai.test_prompts:EchoPrompts"}, source="test"))
    h = AIHost(reg, device="cpu", threads=1, stall_timeout=120)
    yield h
    h.shutdown()


def test_manifest_declares_prompt_kinds_and_rejects_unknown_ones():
    assert _echo_info().prompts == ("points", "box")
    assert PluginInfo.from_dict({"id": "x", "task": "segmentation"}).prompts == ()
    with pytest.raises(HounsfieldError, match="unknown prompt kinds scribble"):
        PluginInfo.from_dict({"id": "x", "task": "segmentation", "prompts": ["points", "scribble"]})


def test_prompts_round_trip_and_split_by_sign():
    p = Prompts((Point((1.0, 2.0, 3.0)), Point((4.0, 5.0, 6.0), False)), Box((9.0, 0.0, 0.0), (1.0, 2.0, 3.0)))
    assert Prompts.from_dict(p.to_dict()) == p
    assert [q.lps for q in p.positive] == [(1.0, 2.0, 3.0)] and [q.lps for q in p.negative] == [(4.0, 5.0, 6.0)]
    assert p.box.normalised() == Box((1.0, 0.0, 0.0), (9.0, 2.0, 3.0))
    assert not Prompts() and p


def test_points_off_the_volume_are_dropped_with_a_note_and_a_box_is_clipped():
    vol = _volume()  # i: -5..9.5 mm, j: -5..4.5, k: 10..28 (voxel centres)
    inside, outside = Point((0.0, 0.0, 12.0)), Point((500.0, 0.0, 12.0), False)
    kept, notes = check_prompts(Prompts((inside, outside), Box((-100.0, -1.0, 12.0), (2.0, 1.0, 14.0))), vol)
    assert kept.points == (inside,)
    assert len(notes) == 2 and "negative point at (500.0, 0.0, 12.0)" in notes[0] and "ignored" in notes[0]
    assert "clipped" in notes[1]
    assert kept.box.lo_lps[0] == pytest.approx(-5.25) and kept.box.hi_lps == (2.0, 1.0, 14.0)
    kept, notes = check_prompts(Prompts((outside,), Box((100.0, 100.0, 100.0), (120.0, 120.0, 120.0))), vol)
    assert kept == Prompts() and any("box lies outside" in n for n in notes)
    assert any("nothing to segment" in n for n in notes)


def test_prompt_errors_are_one_sentence():
    vol = _volume()
    with pytest.raises(HounsfieldError, match=r"^Echo does not take box prompts \(it takes points\)\.$"):
        check_prompts(Prompts(box=Box((0, 0, 12), (1, 1, 13))), vol, ("points",), "Echo")
    with pytest.raises(HounsfieldError, match="not a finite number"):
        check_prompts(Prompts((Point((float("nan"), 0.0, 12.0)),)), vol)


def test_the_worker_passes_prompts_to_the_plugin_and_provenance_records_them(prompt_host):
    vol = _volume()
    prompts = Prompts((Point((0.0, 0.0, 12.0)), Point((1.0, 1.0, 14.0), False), Point((0.0, 0.0, 900.0))),
                      Box((-2.0, -2.0, 20.0), (-1.0, -1.0, 22.0)))
    results = prompt_host.run_sync("echo-prompts", vol, prompts=prompts)
    labels = results.label_maps[0].array
    assert labels[1, 10, 10] == 1  # (0, 0, 12) mm: i = 10, j = 10, k = 1
    assert labels[2, 12, 12] == 2
    assert np.count_nonzero(labels & 4) == 2 * 3 * 3  # k 5-6, j 6-8, i 6-8
    assert labels[labels < 4].size and np.count_nonzero((labels & 3) > 0) == 2  # the point at z = 900 was dropped
    assert any("outside the image" in n for n in results.notes)
    prov = results.provenance
    assert prov["algorithm_type"] == "SEMIAUTOMATIC"
    assert [p["lps_mm"] for p in prov["prompts"]["points"]] == [[0.0, 0.0, 12.0], [1.0, 1.0, 14.0]]
    assert prov["prompts"]["box"]["lo_lps_mm"] == [-2.0, -2.0, 20.0]


def test_a_run_without_prompts_stays_automatic_and_prompts_need_a_declaring_plugin(prompt_host):
    from viewer.core.ai_results import convert_results

    vol = _volume()
    results = prompt_host.run_sync("echo-prompts", vol)
    assert "prompts" not in results.provenance and "algorithm_type" not in results.provenance
    with pytest.raises(HounsfieldError, match="No prompts does not take points prompts"):
        prompt_host.run("no-prompts", vol, prompts=Prompts((Point((0.0, 0.0, 12.0)),)))
    semi = prompt_host.run_sync("echo-prompts", vol, prompts=Prompts((Point((0.0, 0.0, 12.0)),)))
    seg = convert_results(semi, vol).segmentations[0]
    assert {str(s.algorithm_type) for s in seg.segments} == {"SEMIAUTOMATIC"}


@pytest.mark.parametrize(("text", "message"), [
    ("1,2", "must look like X,Y,Z or X,Y,Z,neg"),
    ("1,2,3,maybe", "must look like X,Y,Z or X,Y,Z,neg"),
    ("a,b,c", "must be 3 numbers in mm"),
    ("1,2,inf", "must be 3 numbers in mm"),
])
def test_point_parse_errors_are_one_sentence(text, message):
    from viewer.ai.headless import parse_point

    with pytest.raises(HounsfieldError, match=message) as err:
        parse_point(text)
    msg = str(err.value)
    assert msg.endswith(".") and not re.search(r"\.\s+[A-Z]", msg) and "\n" not in msg  # one sentence


def test_points_and_boxes_parse():
    from viewer.ai.headless import parse_box, parse_point, parse_prompts

    assert parse_point(" -40.5, 12 ,-88") == Point((-40.5, 12.0, -88.0), True)
    assert parse_point("1,2,3,neg") == Point((1.0, 2.0, 3.0), False)
    assert parse_point("1,2,3,POS").positive
    assert parse_box("10,0,5,0,20,-5") == Box((0.0, 0.0, -5.0), (10.0, 20.0, 5.0))
    for bad, msg in (("1,2,3", "six numbers"), ("1,2,3,4,5,x", "must be 6 numbers"), ("0,0,0,5,5,0", "is flat")):
        with pytest.raises(HounsfieldError, match=msg):
            parse_box(bad)
    p = parse_prompts(["1,2,3", "4,5,6,neg"], None)
    assert len(p.positive) == 1 and len(p.negative) == 1 and p.box is None


def test_modality_applies_to_files_without_one_only(tmp_path):
    from tests.conftest import data_path
    from viewer.ai.headless import apply_modality

    nii = viewer.load(data_path("flair-lesion", "FLAIR.nii.gz"))
    assert nii.modality == "OT"
    assert apply_modality(nii, "MR").modality == "MR" and nii.units != "HU"
    ct = viewer.load(data_path("dicom-objects", "dcmqi-liver", "ct-3slice"))
    assert apply_modality(ct, "CT") is ct
    with pytest.raises(HounsfieldError, match="--modality is only for files without a modality"):
        apply_modality(ct, "MR")


def test_a_plugin_that_takes_ct_or_mr_asks_about_a_file_without_a_modality_only():
    """viewer.ai.modality: the viewer asks (CT or MR?) before lesion segmentation runs on a NIfTI MR, not
    on a DICOM series nor for a plugin that takes any image; the answer gives the volume its modality."""
    from tests.conftest import data_path
    from viewer.ai.discovery import Registry
    from viewer.ai.modality import assume_modality, modality_choices

    seg = Registry().get("lesion-segmentation")
    nii = viewer.load(data_path("flair-lesion", "FLAIR.nii.gz"))
    assert modality_choices(nii, seg) == ("MR", "CT")
    assert assume_modality(nii, "mr").modality == "MR" and modality_choices(nii, seg) == ()
    ct = viewer.load(data_path("dicom-objects", "dcmqi-liver", "ct-3slice"))
    assert modality_choices(ct, seg) == ()
    with pytest.raises(HounsfieldError, match="says its own modality"):
        assume_modality(ct, "MR")
