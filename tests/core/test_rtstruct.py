"""RT Structure Sets as segments (viewer.core.rtstruct; its polygon filling is tested in
test_polygons.py): the real dicompyler structure set on its CT slice, checked against the
areas of its contour polygons."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import data_path
from viewer.core.polygons import fill_polygons
from viewer.core.rtstruct import read_rois, read_rtstruct, referenced_series


def square(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def shoelace(p) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def test_the_dicompyler_structure_set_on_its_ct_slice():
    import pydicom

    import viewer

    folder = data_path("dicom-objects", "dicompyler-rt")
    vol = viewer.load(folder)
    ds = pydicom.dcmread(folder / "rtss.dcm")
    assert referenced_series(ds) == vol.source.series_instance_uid
    seg, notes = read_rtstruct(folder / "rtss.dcm", vol)
    rois = read_rois(ds)
    # one segment per ROI, with the ROI's name and display colour
    assert [s.name for s in seg.segments] == [r.name for r in rois] == [
        "BODY", "Areola", "Borders", "Breast", "Heart", "Lt Lung", "Nodes", "Scar", "Tumor Bed", "Tumor Bed Block"]
    assert seg.segments[0].color == (154, 155, 100) and seg.segments[8].color == (255, 0, 0)
    # only BODY has contours on the one CT slice there is (z = 168.56): four of them
    on_slice = [c for c in rois[0].contours if abs(c[0, 2] - vol.index_to_lps([0, 0, 0])[2]) < 0.1]
    assert len(on_slice) == 4
    counts = [seg.count(s) for s in seg.segments]
    assert counts[0] > 0 and counts[1:] == [0] * 9
    assert notes and "lie on none of these images' slices" in notes[0]
    # the mask's area is the even-odd area of the contours (a contour inside another is a hole),
    # give or take half a pixel along their perimeters
    xy = [c[:, :2] for c in on_slice]
    inside = [sum(_inside(p[0], q) for q in xy if q is not p) for p in xy]
    area = sum(shoelace(p) * (1 if depth % 2 == 0 else -1) for p, depth in zip(xy, inside))
    perimeter = sum(np.linalg.norm(np.diff(np.vstack([p, p[:1]]), axis=0), axis=1).sum() for p in xy)
    px = vol.spacing[0] * vol.spacing[1]
    got = counts[0] * px
    assert abs(got - area) < 0.5 * perimeter * vol.spacing[0]
    assert abs(got - area) / area < 0.02
    # each contour's mask (alone) matches its own polygon area closely too
    for p in xy:
        ij = vol.lps_to_index(np.c_[p, np.full(len(p), on_slice[0][0, 2])])[:, :2]
        alone = fill_polygons([ij], vol.shape[1:]).sum() * px
        assert alone == pytest.approx(shoelace(p), abs=0.5 * px + 0.6 * vol.spacing[0]
                                      * np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def _inside(pt, poly) -> bool:
    """Even-odd point in polygon (reference, one point)."""
    x, y = pt
    c = False
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            c = not c
    return c


def test_another_frame_of_reference_is_refused():
    from dataclasses import replace

    import viewer
    from viewer.core.errors import HounsfieldError
    from viewer.core.volume import Volume

    folder = data_path("dicom-objects", "dicompyler-rt")
    vol = viewer.load(folder)
    other = Volume(vol.array, vol.affine, modality="CT", source=replace(vol.source, frame_of_reference_uid="1.2.3"))
    with pytest.raises(HounsfieldError, match="another frame of reference"):
        read_rtstruct(folder / "rtss.dcm", other)
    with pytest.raises(HounsfieldError, match="not an RT Structure Set"):
        read_rtstruct(folder / "ct.0.dcm", vol)
