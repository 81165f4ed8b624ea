"""The 3D view of a thick-slice MR image file (brain-tumor-mr brain1: a T1 NRRD, 256 x 256 x 25,
0.78 x 0.78 x 6.5 mm, no modality) in the real window: the volume rendering shows the head.

The file's rows run anterior (its direction matrix is a reflection, determinant -1).  VTK's GPU ray
caster drew such a volume with the wrong box faces: each ray only grazed the first and last slices,
and the 3D view showed two faint rings (2-4 % of the view's pixels, none in its middle row; the head
covers 40 %) while the 2D views showed the head.  The render image is now right-handed and the reflection goes into the
actor's matrix (viewer/render/image.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import open_study_window

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def mr_window(qapp, tmp_path_factory):
    needs_display()
    win = open_study_window(qapp, tmp_path_factory.mktemp("nrrd3d"), data_path("brain-tumor-mr", "brain1_image.nrrd"))
    yield win
    win.close()


@pytest.fixture
def view(mr_window):
    v = mr_window.grid.views[3]
    v.reset_3d()
    return v


def body(img: np.ndarray) -> np.ndarray:
    """Pixels of the rendering, not of the background gradient (dark blue-grey)."""
    return img[..., 0] > 50  # the gradient background is at most 33 in red


def test_the_file_is_left_handed_and_sits_where_the_2d_planes_say(view, mr_window):
    state = mr_window.model.state(3)
    vol = state.volume
    assert vol.spacing[2] == pytest.approx(6.5) and np.linalg.det(vol.direction) < 0
    img = view.volume.mapper.GetInput()
    direction = np.array([img.GetDirectionMatrix().GetElement(r, c) for r in range(3) for c in range(3)])
    assert np.linalg.det(direction.reshape(3, 3)) > 0  # what the ray caster draws is right-handed
    assert mr_window.session.vtk_volume(state.key).shares_memory()  # and still the volume's own buffer
    nk, nj, ni = vol.shape
    corners = vol.index_to_lps([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)])
    b = np.array(view.volume.bounds()).reshape(3, 2)
    assert np.allclose(b[:, 0], corners.min(axis=0), atol=0.5) and np.allclose(b[:, 1], corners.max(axis=0),
                                                                               atol=0.5)


@pytest.mark.parametrize("quality", ["interactive", "refined"])
def test_the_head_fills_the_3d_view(view, quality):
    assert view.preset_name == "MR default"
    img = view.capture_still(quality)
    share = body(img).mean()
    assert share > 0.25, f"the head covers {share:.1%} of the 3D view"
    # one solid head, not rings at the top and bottom slices: the middle row is mostly head
    h, w = body(img).shape
    middle = body(img)[h // 2]
    assert middle.mean() > 0.4




def test_a_click_on_the_head_in_3d_lands_on_its_anterior_surface(view, mr_window):
    """vtkVolumePicker misses every voxel of an image whose direction is not the identity: a click on
    the head found nothing and the 2D crosshair stayed put."""
    view.standard_view("anterior")
    img = view.capture_still("interactive")
    state = mr_window.model.state(3)
    h, w = img.shape[:2]
    row = int(h * 0.35)  # the forehead (image rows from the top; VTK's display y from the bottom)
    assert body(img)[row, w // 2]
    before = state.point.copy()
    assert view.pick_to_crosshair(w / 2, h - 1 - row)
    p = state.point
    assert not np.allclose(p, before)
    vol = state.volume
    centre = vol.index_to_lps([(s - 1) / 2 for s in vol.shape[::-1]])
    assert p[1] < centre[1] - 60  # on the front of the head (LPS: +y posterior), not inside or behind it
    value, _ = state.value_at(p)
    assert value > 900  # on the scalp (the preset's opacity passes 0.1 near the window's centre, 994)
