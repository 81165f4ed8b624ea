"""Reading DICOM SEG back (viewer.core.io.seg_dicom.read_dicom_seg): what the viewer wrote, one
segment or many, and the SEG files of other tools."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import data_path
from viewer.core.edits import Editor
from viewer.core.segmentation import Segmentation


@pytest.fixture(scope="module")
def chest():
    import viewer

    return viewer.load(data_path("chest-ct"))


def test_a_single_segment_seg_the_viewer_wrote_loads_back_with_identical_voxels(chest, tmp_path):
    """highdicom puts the segment identification of a one-segment SEG in the shared functional groups."""
    import pydicom

    from viewer.core.io.seg_dicom import read_dicom_seg, write_dicom_seg

    seg = Segmentation.for_volume(chest, "Reading")
    ed = Editor(seg, chest)
    tumor = ed.add_segment("Tumor")
    ed.brush(tumor, chest.index_to_lps([150.0, 250.0, 70]), radius_mm=12)
    ed.brush(tumor, chest.index_to_lps([160.0, 240.0, 0]), radius_mm=6, normal=[0, 0, 1])  # first slice
    ed.brush(tumor, chest.index_to_lps([40.0, 300.0, 140]), radius_mm=6, normal=[0, 0, 1])  # last slice
    path = write_dicom_seg(seg, chest, tmp_path / "one.seg.dcm")
    ds = pydicom.dcmread(path)
    assert "SegmentIdentificationSequence" in ds.SharedFunctionalGroupsSequence[0]  # the case of the bug
    back = read_dicom_seg(path, chest)
    assert [s.name for s in back.segments] == ["Tumor"]
    assert np.array_equal(back.mask(back.segments[0]), seg.mask(tumor))
    assert back.label_map().dtype == np.uint8 and np.array_equal(back.label_map() != 0, seg.layers[0] != 0)


@pytest.mark.parametrize("name", ["seg_image_ct_binary.dcm", "seg_image_ct_binary_fractional.dcm",
                                  "seg_image_ct_binary_overlap.dcm"])
def test_the_highdicom_seg_files_keep_loading(name):
    import pydicom

    from viewer.core.io.seg_dicom import read_dicom_seg
    from viewer.core.volume import SourceInfo, Volume, affine_from

    path = data_path("dicom-objects", "highdicom", name)
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    groups = ds.PerFrameFunctionalGroupsSequence
    pos = sorted({tuple(float(v) for v in (g if "PlanePositionSequence" in g else shared)
                        .PlanePositionSequence[0].ImagePositionPatient) for g in groups}, key=lambda p: p[2])
    sp = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    dz = pos[1][2] - pos[0][2] if len(pos) > 1 else 1.0
    vol = Volume(np.zeros((len(pos), int(ds.Rows), int(ds.Columns)), np.int16),
                 affine_from((sp[1], sp[0], dz), pos[0], np.eye(3)),
                 source=SourceInfo(frame_of_reference_uid=str(ds.FrameOfReferenceUID)))
    seg = read_dicom_seg(path, vol)
    assert len(seg.segments) == len(ds.SegmentSequence)
    for s in seg.segments:
        assert seg.count(s) > 0, s.name
