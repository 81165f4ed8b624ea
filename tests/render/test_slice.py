"""The reslice pipeline: zero-copy VTK images, exact aligned slices, sheared (tilted) affines,
orientation without flipping arrays, and progressive filling seen through the shared buffer."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.planes import plane_axes, rotation_about, slice_geometry
from viewer.core.viewstate import SeriesState
from viewer.core.volume import SourceInfo, Volume, affine_from
from viewer.render.image import VtkVolume, is_sheared
from viewer.render.slice import SlicePipeline, lookup_table


def make_volume(shape=(12, 20, 30), spacing=(1.0, 1.0, 2.0), affine=None, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1000, size=shape).astype(np.int16)
    aff = affine if affine is not None else affine_from(spacing, (-15, -10, 0), np.eye(3))
    return Volume(arr, aff, modality="CT", units="HU", source=SourceInfo())


def trilinear(arr: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Reference trilinear interpolation of arr[k, j, i] at continuous (i, j, k) points."""
    lo = np.floor(ijk).astype(int)
    f = ijk - lo
    hi = np.minimum(lo + 1, np.array(arr.shape[::-1]) - 1)
    out = np.zeros(len(ijk))
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                i = np.where(di, hi[:, 0], lo[:, 0])
                j = np.where(dj, hi[:, 1], lo[:, 1])
                k = np.where(dk, hi[:, 2], lo[:, 2])
                w = (f[:, 0] if di else 1 - f[:, 0]) * (f[:, 1] if dj else 1 - f[:, 1]) * (
                    f[:, 2] if dk else 1 - f[:, 2])
                out += w * arr[k, j, i]
    return out


def resliced(vol: Volume, plane: str, point) -> np.ndarray:
    state = SeriesState("s", vol)
    state.point = np.asarray(point, float)
    pipe = SlicePipeline(VtkVolume(vol), background=-2000)
    pipe.set_geometry(state.geometry(plane))
    return pipe.output_array()


def test_vtk_image_shares_the_volume_buffer():
    vol = make_volume()
    vv = VtkVolume(vol)
    assert vv.shares_memory()
    assert vv.index_image.GetDimensions() == (30, 20, 12)
    assert vv.patient_image.GetSpacing() == pytest.approx((1.0, 1.0, 2.0))
    assert vv.patient_image.GetOrigin() == pytest.approx((-15, -10, 0))


def test_axial_slice_is_the_stored_slice_with_anterior_up():
    vol = make_volume()
    k = 5
    out = resliced(vol, "axial", vol.index_to_lps([3, 4, k]))
    # output rows grow upwards on screen = anteriorly = towards smaller j; columns = +i (patient left)
    assert np.array_equal(out, vol.array[k, ::-1, :])


def test_coronal_and_sagittal_are_exact_on_an_isotropic_grid():
    vol = make_volume(spacing=(1.0, 1.0, 1.0))
    i, j = 7, 11
    cor = resliced(vol, "coronal", vol.index_to_lps([i, j, 3]))
    assert np.array_equal(cor, vol.array[:, j, :])  # up = superior = +k, right = +i
    sag = resliced(vol, "sagittal", vol.index_to_lps([i, j, 3]))
    assert np.array_equal(sag, vol.array[:, :, i])  # right = posterior = +j, up = +k


def test_coronal_interpolates_between_thick_slices():
    vol = make_volume(spacing=(1.0, 1.0, 2.0))
    j = 6
    cor = resliced(vol, "coronal", vol.index_to_lps([0, j, 0]))
    assert cor.shape == (23, 30)  # 11 gaps of 2 mm sampled every 1 mm
    assert np.array_equal(cor[::2], vol.array[:, j, :])
    mid = (vol.array[:-1, j, :].astype(float) + vol.array[1:, j, :]) / 2
    assert np.allclose(cor[1::2], mid, atol=1.0)


def test_sheared_gantry_tilt_affine_is_sampled_exactly():
    tilt = np.radians(15)
    aff = np.eye(4)
    aff[:3, 0] = [0.9, 0, 0]
    aff[:3, 1] = [0, 0.9, 0]
    aff[:3, 2] = [0, 2.5 * np.sin(tilt), 2.5 * np.cos(tilt)]  # slices shifted in y as z grows
    aff[:3, 3] = [-10, -8, 0]
    vol = make_volume(affine=aff)
    assert is_sheared(aff)
    k = 6
    point = vol.index_to_lps([4, 5, k])
    out = resliced(vol, "axial", point)
    state = SeriesState("s", vol)
    state.point = point
    geom = state.geometry("axial")
    x0, _, y0, _ = geom.extent
    ny, nx = out.shape
    xs, ys = np.meshgrid(x0 + np.arange(nx) * geom.spacing, y0 + np.arange(ny) * geom.spacing)
    lps = geom.origin + xs[..., None] * geom.u + ys[..., None] * geom.v
    idx = vol.lps_to_index(lps.reshape(-1, 3))
    assert np.allclose(idx[:, 2], k)  # the axial plane cuts the tilted stack along slice k exactly
    inside = np.all((idx >= 0) & (idx <= np.array([29, 19, 11])), axis=1)
    assert inside.sum() > 300
    expected = trilinear(vol.array, idx[inside])
    assert np.allclose(out.reshape(-1)[inside], expected, atol=1.0)
    # beyond the half-voxel border that VTK extends edges by: the background level
    far = np.any((idx < -0.51) | (idx > np.array([29.51, 19.51, 11.51])), axis=1)
    assert far.sum() > 30 and np.all(out.reshape(-1)[far] == -2000)


def test_decoded_slices_appear_after_modified():
    vol = make_volume()
    vv = VtkVolume(vol)
    pipe = SlicePipeline(vv)
    state = SeriesState("s", vol)
    pipe.set_geometry(state.geometry("axial"))
    k = int(round(vol.lps_to_index(state.point)[2]))
    before = pipe.output_array().copy()
    vol.array[k] = 123  # a loader thread writing into the shared buffer
    vv.modified()
    after = pipe.output_array()
    assert not np.array_equal(before, after) and np.all(after == 123)


def test_oblique_plane_covers_the_whole_volume():
    vol = make_volume()
    u, v, n = plane_axes("coronal", rotation_about([0, 0, 1], np.radians(40)))
    geom = slice_geometry(vol, u, v, n, vol.index_to_lps([15, 10, 6]))
    nx, ny = geom.size
    assert nx > 30 and ny > 20
    corners = [geom.to_lps(geom.extent[a], geom.extent[b]) for a in (0, 1) for b in (2, 3)]
    spans = np.ptp(np.array(corners) @ u), np.ptp(np.array(corners) @ v)
    assert spans[0] >= 29 * 0.99


def test_lookup_table_inverts():
    lut = lookup_table(((0, 0, 0, 0), (1, 1, 1, 1)), invert=True)
    assert lut.GetTableValue(0)[:3] == pytest.approx((1, 1, 1))
    assert lut.GetTableValue(255)[:3] == pytest.approx((0, 0, 0))
