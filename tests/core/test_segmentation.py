"""Segmentation model, crash journal, DICOM SEG and label-map files (viewer.core.segmentation,
viewer.core.journal, viewer.core.io)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO, data_path
from viewer.core import journal
from viewer.core.edits import Editor
from viewer.core.segmentation import Segmentation, from_label_map, terminology
from viewer.core.volume import Volume, affine_from


def small():
    vol = Volume(np.zeros((10, 30, 30), np.int16), affine_from((0.8, 0.8, 2.0), (0, 0, 0), np.eye(3)), "CT", "HU")
    return vol, Segmentation.for_volume(vol)


def test_segments_take_terminology_and_colour_from_the_table():
    assert terminology()["liver"]["type"] == ("10200004", "SCT", "Liver")
    vol, seg = small()
    liver = seg.add_segment("Liver")
    other = seg.add_segment()
    assert liver.category[2] == "Anatomical Structure" and liver.color == (221, 130, 101)
    assert other.name == "Segment 2" and other.type == ("85756007", "SCT", "Tissue") and other.color != liver.color
    assert liver.algorithm_type == "MANUAL" and liver.provenance == "drawn by hand"
    seen = []
    seg.segments_changed.connect(lambda: seen.append(1))
    seg.update_segment(liver, name="Liver (left lobe)", color=(1, 2, 3), visible=False)
    assert seen and liver.name == "Liver (left lobe)" and liver.color == (1, 2, 3) and not liver.visible
    with pytest.raises(ValueError):
        seg.add_segment("x", number=1)


def test_uint16_beyond_255_and_label_map_import_with_provenance():
    vol, seg = small()
    seg.add_segment("big", number=300)
    assert seg.layers[0].dtype == np.uint16
    labels = np.zeros(vol.shape, np.uint8)
    labels[2:4, 5:10, 5:10] = 1
    labels[5:7, 5:10, 5:10] = 7
    auto = from_label_map(vol, labels, [{"label": 1, "name": "Lung", "color": (0, 0, 255)},
                                        {"label": 7, "name": "Nodule"}],
                          algorithm_name="Lung nodules", algorithm_version="1.2")
    assert [s.name for s in auto.segments] == ["Lung", "Nodule"]
    assert all(s.algorithm_type == "AUTOMATIC" and s.algorithm_version == "1.2" for s in auto.segments)
    assert auto.count(auto.segment(7)) == 50 and auto.layers[0] is not labels


SEQUENCE = textwrap.dedent("""
    import numpy as np
    from viewer.core.edits import Editor
    from viewer.core.segmentation import Segmentation
    from viewer.core.volume import affine_from

    def editing():
        \"\"\"A segmentation and its editor, then one edit per next() (deterministic).\"\"\"
        seg = Segmentation((12, 40, 40), affine_from((1, 1, 2), (0, 0, 0), np.eye(3)), series_uid="1.2.3.4",
                           uid="journaltest")
        ed = Editor(seg)
        yield seg, ed
        a = ed.add_segment("Tumor")
        b = ed.add_segment("Edema", layer="new")
        rng = np.random.default_rng(7)
        n = 0
        while True:
            p = rng.uniform([0, 0, 0], [39, 39, 22])
            ed.brush(a if n % 3 else b, p, p + rng.uniform(-3, 3, 3), radius_mm=rng.uniform(1, 4),
                     normal=[0, 0, 1], erase=(n % 5 == 4))
            if n % 7 == 6:
                ed.undo()
            n += 1
            yield seg
""")

CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    os.environ["HOUNSFIELD_DATA_DIR"] = {data!r}
    exec(open({seq!r}).read())
    from viewer.core.journal import Journal
    steps = editing()
    seg, ed = next(steps)
    Journal(seg, editor=ed)
    for n, _ in enumerate(steps):
        print(n, flush=True)
        time.sleep(0.002)
""")


def test_killed_editor_is_restored_exactly_from_its_journal(tmp_path):
    data = str(tmp_path / "data")
    seq = tmp_path / "sequence.py"
    seq.write_text(SEQUENCE)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), data=data, seq=str(seq)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(80):  # at least 80 edits journaled, then kill it while it edits on
            proc.stdout.readline()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    os.environ["HOUNSFIELD_DATA_DIR"], old = data, os.environ["HOUNSFIELD_DATA_DIR"]
    try:
        found = journal.recoverable("1.2.3.4")
        assert len(found) == 1 and found[0].segments == ["Tumor", "Edema"]
        restored = journal.replay(found[0].path)
    finally:
        os.environ["HOUNSFIELD_DATA_DIR"] = old
    # the same edits again, here: the restored segmentation is exactly the state after one of them
    scope: dict = {}
    exec(SEQUENCE, scope)
    steps = scope["editing"]()
    seg, _ = next(steps)
    for n, _ in enumerate(steps):
        if n >= 79 and all(np.array_equal(a, b) for a, b in zip(seg.layers, restored.layers)):
            break
        assert n < 20000, "the restored segmentation matches no state the editor went through"
    assert len(restored.layers) == 2 and restored.segments[1].layer == 1
    assert seg.meta() == restored.meta()


def test_journal_replay_is_exact_and_saving_clears_recovery():
    vol, seg = small()
    seg.series_uid = "9.8.7"
    ed = Editor(seg, vol)
    j = journal.Journal(seg, editor=ed)
    s = ed.add_segment("Tumor")
    ed.brush(s, vol.index_to_lps([10, 10, 5]), radius_mm=4, normal=[0, 0, 1])
    ed.brush(s, vol.index_to_lps([15, 12, 5]), radius_mm=2, normal=[0, 0, 1], erase=True)
    ed.undo()
    seg.update_segment(s, name="Mass", color=(9, 9, 9))
    again = journal.replay(j.path)
    assert np.array_equal(again.layers[0], seg.layers[0]) and again.segments[0].name == "Mass"
    assert again.uid == seg.uid and np.allclose(again.affine, seg.affine)
    assert journal.recoverable("9.8.7")
    j.mark_saved("out.seg.dcm")
    assert not journal.recoverable("9.8.7")
    ed.brush(s, vol.index_to_lps([5, 5, 2]), radius_mm=2, normal=[0, 0, 1])
    assert journal.recoverable("9.8.7")
    j.close(discard=True)
    assert not os.path.exists(j.path)


@pytest.fixture(scope="module")
def chest():
    import viewer

    return viewer.load(data_path("chest-ct"))


def edited_chest_segmentation(chest):
    seg = Segmentation.for_volume(chest, "Reading")
    ed = Editor(seg, chest)
    tumor = ed.add_segment("Tumor")
    lung = ed.add_segment("Right lung", layer="new")
    ed.brush(tumor, chest.index_to_lps([150.0, 250.0, 70]), radius_mm=12)
    ed.brush(lung, chest.index_to_lps([150.0, 250.0, 72]), radius_mm=20, normal=[0, 0, 1])
    auto = seg.add_segment("Nodule", algorithm_type="AUTOMATIC", algorithm_name="Nodule finder",
                           algorithm_version="0.3")
    ed.brush(auto, chest.index_to_lps([350.0, 250.0, 40]), radius_mm=5)
    return seg


def test_dicom_seg_round_trip_on_the_chest_ct(chest, tmp_path):
    import pydicom

    from viewer.core.io.seg_dicom import read_dicom_seg, referenced_series, write_dicom_seg

    seg = edited_chest_segmentation(chest)
    assert seg.overlapping()
    path = write_dicom_seg(seg, chest, tmp_path / "reading.seg.dcm")
    ds = pydicom.dcmread(path)
    assert ds.SegmentationType == "BINARY" and referenced_series(path) == chest.source.series_instance_uid
    items = {i.SegmentLabel: i for i in ds.SegmentSequence}
    assert items["Tumor"].SegmentAlgorithmType == "MANUAL"
    assert items["Nodule"].SegmentAlgorithmType == "SEMIAUTOMATIC"  # edited by a person after the algorithm
    assert items["Nodule"].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "Nodule finder"
    assert items["Right lung"].SegmentedPropertyTypeCodeSequence[0].CodeValue == "3341006"
    back = read_dicom_seg(path, chest)
    for s in seg.segments:
        b = back.by_name(s.name)
        assert np.array_equal(back.mask(b), seg.mask(s)), s.name
        assert b.color == pytest.approx(s.color, abs=2) and b.type == s.type
    assert back.by_name("Nodule").algorithm_version == "0.3"


def test_nifti_and_nrrd_round_trip_keeps_voxels_and_segments(chest, tmp_path):
    from viewer.core.io.labelmap_files import read_labelmap, write_labelmap

    seg = edited_chest_segmentation(chest)
    for name in ("reading.nii.gz", "reading.nrrd"):
        written = write_labelmap(seg, tmp_path / name)
        assert len(written) == 3  # two layers (overlap) and the side file
        back = read_labelmap(tmp_path / name, chest)
        assert len(back.layers) == 2
        for a, b in zip(seg.layers, back.layers):
            assert np.array_equal(a, b)
        assert [s.to_dict() for s in back.segments] == [s.to_dict() for s in seg.segments]


def test_plain_label_map_file_without_side_file(tmp_path):
    import viewer

    vol, _ = small()
    labels = np.zeros(vol.shape, np.uint8)
    labels[1:3, 4:8, 4:8], labels[3:5, 4:8, 4:8] = 2, 5
    viewer.save(Volume(labels, vol.affine), tmp_path / "l.nii.gz")
    from viewer.core.io.labelmap_files import read_labelmap

    seg = read_labelmap(tmp_path / "l.nii.gz", vol)
    assert [s.number for s in seg.segments] == [2, 5] and np.array_equal(seg.layers[0], labels)


def test_load_a_dicom_seg_onto_its_referenced_ct():
    import viewer
    from viewer.core.io.seg_dicom import is_dicom_seg, read_dicom_seg, referenced_series

    folder = data_path("dicom-objects", "dcmqi-liver")
    path = folder / "liver-seg.dcm"
    ct = viewer.load(folder / "ct-3slice")
    assert is_dicom_seg(path) and referenced_series(path) == ct.source.series_instance_uid
    seg = read_dicom_seg(path, ct)
    liver = seg.by_name("Liver")
    assert liver is not None and liver.type[2] == "Liver" and liver.algorithm_name == "SlicerEditor"
    m = seg.mask(liver)
    assert m.any(axis=(1, 2)).all()  # on each of the three slices
    assert (ct.real_values()[m].mean() > 20) and (ct.real_values()[m].mean() < 200)  # liver HU


def test_overlapping_dicom_seg_goes_to_two_layers():
    import pydicom

    from viewer.core.io.seg_dicom import read_dicom_seg
    from viewer.core.volume import SourceInfo

    path = data_path("dicom-objects", "highdicom", "seg_image_ct_binary_overlap.dcm")
    ds = pydicom.dcmread(path)
    pos = sorted({tuple(float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient)
                  for g in ds.PerFrameFunctionalGroupsSequence}, key=lambda p: p[2])
    sp = [float(v) for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing]
    dz = pos[1][2] - pos[0][2]
    vol = Volume(np.zeros((len(pos), 16, 16), np.int16), affine_from((sp[1], sp[0], dz), pos[0], np.eye(3)),
                 source=SourceInfo(frame_of_reference_uid=str(ds.FrameOfReferenceUID)))
    seg = read_dicom_seg(path, vol)
    assert len(seg.segments) == 2 and len(seg.layers) == 2 and seg.overlapping()


@pytest.mark.parametrize("entry", ["../secret.nii.gz", "{outside}", "sub/../../secret.nii.gz", "..", "link.nii.gz",
                                   "sub/layer2.nii.gz"])
def test_a_side_file_cannot_point_the_reader_outside_its_folder(tmp_path, entry):
    """segments.json lists the layer files: only plain names of files beside it are read."""
    import json

    import viewer
    from viewer.core.errors import HounsfieldError
    from viewer.core.io.labelmap_files import read_labelmap, write_labelmap

    vol, seg = small()
    ed = Editor(seg, vol)
    a, b = ed.add_segment("A"), ed.add_segment("B", layer="new")
    ed.brush(a, vol.index_to_lps([10, 10, 5]), radius_mm=4)
    ed.brush(b, vol.index_to_lps([12, 10, 5]), radius_mm=4)
    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / "sub").mkdir()
    written = write_labelmap(seg, folder / "l.nii.gz")
    secret = np.zeros(vol.shape, np.uint8)
    secret[0, 0, 0] = 2
    viewer.save(Volume(secret, vol.affine), tmp_path / "secret.nii.gz")  # a file the reader must not read
    viewer.save(Volume(secret, vol.affine), folder / "sub" / "layer2.nii.gz")
    os.symlink(tmp_path / "secret.nii.gz", folder / "link.nii.gz")
    assert read_labelmap(folder / "l.nii.gz", vol).layers[1][5, 10, 12] == 2  # as written: fine
    side = written[-1]
    meta = json.loads(open(side).read())
    meta["files"][1] = entry.format(outside=tmp_path / "secret.nii.gz")
    with open(side, "w") as f:
        json.dump(meta, f)
    with pytest.raises(HounsfieldError, match="outside its folder"):
        read_labelmap(folder / "l.nii.gz", vol)


SEG_A = {"number": 1, "name": "A", "color": [1, 2, 3], "category": ["1", "2", "3"], "type": ["1", "2", "3"]}


@pytest.mark.parametrize("meta", [[1, 2], {"files": "l.nii.gz"}, {"files": [None, 3]},
                                  {"segments": [{"number": "x"}]}, {"segments": "x"},
                                  {"segments": [{**SEG_A, "layer": 7}]}, {"segments": [{**SEG_A, "__class__": 1}]},
                                  {"segments": [SEG_A, SEG_A]}, {"segments": [{**SEG_A, "number": 70000}]}])
def test_a_malformed_side_file_is_one_sentence(tmp_path, meta):
    import json

    import viewer
    from viewer.core.errors import HounsfieldError
    from viewer.core.io.labelmap_files import read_labelmap

    vol, _ = small()
    labels = np.zeros(vol.shape, np.uint8)
    labels[1:3, 4:8, 4:8] = 1
    viewer.save(Volume(labels, vol.affine), tmp_path / "l.nii.gz")
    (tmp_path / "l.segments.json").write_text(json.dumps(meta))
    with pytest.raises(HounsfieldError) as err:
        read_labelmap(tmp_path / "l.nii.gz", vol)
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")
