"""Segment surfaces rendered off-screen (pure VTK): lit the same whatever the sign of the label
map's affine determinant (the brain-tumour NRRD has a negative one)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import viewer.render.backends  # noqa: F401  (before any mapper is made: the OpenGL ones)
from tests.conftest import data_path
from viewer.core.volume import Volume
from viewer.render.surfaces import label_surfaces

BACKGROUND = (0.1, 0.1, 0.2)
NOTES = "/work/notes"


def render(actor, view_dir, size=320) -> np.ndarray:
    """RGB pixels of ``actor`` seen along ``view_dir`` (LPS) with the default headlight."""
    from vtkmodules.vtkRenderingCore import vtkRenderer, vtkRenderWindow

    from viewer.render.capture import capture

    win = vtkRenderWindow()
    win.SetOffScreenRendering(1)
    win.SetMultiSamples(0)
    win.SetSize(size, size)
    ren = vtkRenderer()
    ren.SetBackground(*BACKGROUND)
    win.AddRenderer(ren)
    ren.AddActor(actor)
    ren.ResetCamera()
    cam = ren.GetActiveCamera()
    centre = np.array(cam.GetFocalPoint())
    cam.SetPosition(*(centre - 400 * np.asarray(view_dir, float)))
    cam.SetViewUp(0, 0, 1) if abs(view_dir[2]) < 0.9 else cam.SetViewUp(0, -1, 0)
    ren.ResetCamera()
    try:
        return capture(win)
    finally:
        ren.RemoveActor(actor)
        win.Finalize()


def surface_pixels(rgb: np.ndarray) -> np.ndarray:
    bg = np.round(np.array(BACKGROUND) * 255)
    return rgb[np.abs(rgb.astype(float) - bg).max(axis=2) > 3]


@pytest.fixture(scope="module")
def tumour():
    import viewer

    return viewer.load(data_path("brain-tumor-mr", "brain1_label.nrrd"))


def mirrored(lm: Volume) -> Volume:
    """The same voxels in the same place with a positive determinant (rows stored the other way)."""
    aff = lm.affine.copy()
    nj = lm.shape[1]
    aff[:3, 3] = lm.index_to_lps([0, nj - 1, 0])
    aff[:3, 1] = -aff[:3, 1]
    return Volume(np.ascontiguousarray(lm.array[:, ::-1, :]), aff, modality="SEG")


@pytest.mark.parametrize("view_dir", [(0, 1, 0), (0, 0, -1), (1, 0, 0)])
def test_a_surface_on_a_negative_determinant_affine_is_lit_like_on_a_positive_one(tumour, view_dir):
    assert np.linalg.det(tumour.affine[:3, :3]) < 0
    pos = mirrored(tumour)
    assert np.linalg.det(pos.affine[:3, :3]) > 0
    assert np.allclose(pos.index_to_lps([10, 200, 12]), tumour.index_to_lps([10, 55, 12]))
    colour = (0.9, 0.3, 0.25)
    neg_rgb = render(label_surfaces(tumour, {1: colour})[1], view_dir)
    pos_rgb = render(label_surfaces(pos, {1: colour})[1], view_dir)
    neg, ref = surface_pixels(neg_rgb), surface_pixels(pos_rgb)
    assert len(ref) > 500 and abs(len(neg) - len(ref)) < 0.1 * len(ref)  # the same surface, same place
    bright_neg, bright_ref = neg.mean(), ref.mean()
    assert bright_ref > 60  # lit, not black
    assert bright_neg > 0.8 * bright_ref, f"surface brightness {bright_neg:.0f} vs {bright_ref:.0f}"
    assert np.percentile(neg[:, 0], 50) > 0.8 * np.percentile(ref[:, 0], 50)  # red, as coloured
    if view_dir == (0, 1, 0) and os.path.isdir(NOTES):
        from PIL import Image

        Image.fromarray(np.concatenate([neg_rgb, pos_rgb], axis=1)).save(os.path.join(NOTES, "surface.png"))
