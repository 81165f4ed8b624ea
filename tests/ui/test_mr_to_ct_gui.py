"""MR-to-CT in the real window: the atlas plugin runs through the real worker on a real head MR
(brain-mr-t1, every 4th row and column written back as DICOM to keep the run short); the synthetic CT
opens as a derived series on the MR's grid, linked (wheel-scrolling the MR moves it to the same LPS
position), with plausible HU, and the uncertainty heatmap (in HU) draws over the MR."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, data_path
from tests.ui.conftest import needs_display
from tests.ui.helpers import open_study_window, settle

pytestmark = pytest.mark.gui
STEP = 4  # 512 x 512 -> 128 x 128 in plane (1.64 mm), all 120 slices (1.5 mm)


def _small_mr_dicom(src: Path, out: Path) -> Path:
    """The real MR's DICOM files with every STEP-th row and column (headers kept, geometry adjusted)."""
    import pydicom

    out.mkdir()
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        arr = np.ascontiguousarray(ds.pixel_array[::STEP, ::STEP])
        ds.PixelData = arr.tobytes()
        ds.Rows, ds.Columns = arr.shape
        ds.PixelSpacing = [float(v) * STEP for v in ds.PixelSpacing]
        ds.save_as(out / f.name)
    return out


def _wheel(view, steps: int) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    pos = QPointF(view.width() / 2, view.height() / 2)
    ev = QWheelEvent(pos, view.mapToGlobal(pos), QPoint(0, 0), QPoint(0, -120 * steps),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view, ev)


def _coloured(img: np.ndarray) -> int:
    rgb = img[..., :3].astype(int)
    return int(((rgb[..., 0] - rgb[..., 2]) > 40).sum())


@pytest.fixture(scope="module")
def mr_window(qapp, tmp_path_factory):
    needs_display()
    data_path("mr-ct-templates", "scct.nii.gz")  # the atlas templates (skips with a reason when absent)
    from viewer.ai.discovery import Registry
    from viewer.ai.host import AIHost

    def cpu_host(win):
        registry = Registry(models=Path("/nonexistent-models"), entry_points=False)
        win.features.ai.controller._host = AIHost(registry, device="cpu", threads=2, stall_timeout=300)

    tmp = tmp_path_factory.mktemp("mrct")
    folder = _small_mr_dicom(data_path("brain-mr-t1"), tmp / "mr")
    win = open_study_window(qapp, tmp, folder, size=(1500, 950), before_show=cpu_host)
    yield win
    win.close()


@pytest.fixture(scope="module")
def synthetic(mr_window, qapp):
    """Run the real plugin once for the module from the window; the result it produced."""
    win = mr_window
    ai = win.features.ai.controller
    win.model.set_active(0)
    assert win.model.active_state.volume.modality == "MR"
    handle = ai.start("mr-to-ct", {})
    assert handle is not None, win.message_bar.text()
    end = time.monotonic() + 600
    while not ai.entries and time.monotonic() < end:
        qapp.processEvents()
        time.sleep(0.02)
        if not ai.running:  # ended: its result (or error) arrives within a few events
            end = min(end, time.monotonic() + 5)
    for _ in range(5):
        qapp.processEvents()
    assert ai.entries, win.message_bar.text() or "the MR-to-CT plugin gave no result"
    return ai.entries[-1]


def test_the_synthetic_ct_opens_linked_to_the_mr_with_its_uncertainty_in_hu(mr_window, synthetic, qtbot):
    win, m = mr_window, mr_window.model
    src_key, ct_key = synthetic.source_key, synthetic.derived_keys[0]
    mr, ct = m.series[src_key], m.series[ct_key]
    # a derived CT on the MR's exact grid, beside it
    assert [(vp.series, vp.plane) for vp in m.viewports[:2]] == [(src_key, "axial"), (ct_key, "axial")]
    assert ct.volume.shape == mr.volume.shape == (120, 128, 128)
    np.testing.assert_allclose(ct.volume.affine, mr.volume.affine, atol=1e-4)
    assert ct.volume.modality == "CT" and ct.frame_of_reference == mr.frame_of_reference
    assert synthetic.provenance["plugin_id"] == "mr-to-ct"
    # plausible HU: air in the corner, brain in the middle of the head at the level of the ventricles
    hu = ct.volume.real_values()
    assert np.all(hu[:, :6, :6] == -1000)
    head = hu > -500
    kk = np.nonzero(head.any(axis=(1, 2)))[0]
    k = int(kk.max()) - 45  # about 68 mm below the top of the head
    jj, ii = np.nonzero(head[k])
    jc, ic = int(np.median(jj)), int(np.median(ii))
    brain = hu[k - 15:k + 15, jc - 12:jc + 12, ic - 12:ic + 12]  # 45-90 mm down: brain around the ventricles
    assert 15 <= np.median(brain) <= 45, np.median(brain)
    assert np.mean((brain > -20) & (brain < 80)) > 0.8 and np.mean(brain > 300) < 0.01  # no bone in the brain
    assert hu.max() > 600  # skull
    # linked: real wheel events in the MR's view move the CT to the same LPS position
    m.set_active(0)
    mr_view = win.grid.views[0]
    before = ct.point.copy()
    _wheel(mr_view, 6)
    settle(qtbot, 50)
    assert not np.isclose(ct.point[2], before[2])
    assert np.allclose(ct.point, mr.point, atol=1e-4)
    _wheel(mr_view, -3)
    settle(qtbot, 50)
    assert np.allclose(ct.point, mr.point, atol=1e-4)
    # the uncertainty heatmap: on the MR, in HU, zero in the air, drawn in the view
    layer = synthetic.heatmaps[0]
    assert layer in mr.open_series.heatmaps and layer.unit == "HU" and layer.full_scale == pytest.approx(300.0)
    assert layer.volume.shape == mr.volume.shape and np.all(layer.volume.array[:, :6, :6] == 0)
    m.set_point(src_key, mr.volume.index_to_lps([ic, jc, k]))
    m.set_crosshair_visible(False)
    layer.set(visible=False)
    settle(qtbot, 100)
    base = _coloured(mr_view.capture())
    layer.set(visible=True, opacity=0.7, threshold=0.05)
    settle(qtbot, 100)
    assert _coloured(mr_view.capture()) - base > 500
    hp = next(hp for hp in mr_view.heatmaps if hp.layer is layer)
    assert hp.title.GetInput() == f"{layer.name} (HU)"
    m.set_crosshair_visible(True)


def test_screenshot_of_mr_to_ct(mr_window, synthetic, qtbot, tmp_path):
    """docs/screenshot-mr-to-ct.png (with HOUNSFIELD_SCREENSHOT=1, or the README's HOUNSFIELD_SCREENSHOTS=1;
    else a temporary file): the MR with its uncertainty heatmap, the synthetic CT beside it (W 100 L 40),
    and the CT's coronal."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDockWidget

    win, m = mr_window, mr_window.model
    src_key, ct_key = synthetic.source_key, synthetic.derived_keys[0]
    mr, ct = m.series[src_key], m.series[ct_key]
    hidden = [d for d in win.findChildren(QDockWidget) if d.isVisible() and d is not win.features.ai.dock]
    for d in hidden:  # the three views and the AI panel only
        d.hide()
    win.features.ai.dock.show()
    win.resizeDocks([win.features.ai.dock], [420], Qt.Orientation.Horizontal)
    m.set_layout("1x3")
    for slot, key, plane in ((0, src_key, "axial"), (1, ct_key, "axial"), (2, ct_key, "coronal")):
        m.show_series(slot, key)
        m.set_plane(slot, plane)
    ct.set_window(40, 100)
    hu = ct.volume.real_values()
    k = int(np.nonzero((hu > -500).any(axis=(1, 2)))[0].max()) - 45
    nk, nj, ni = hu.shape
    m.set_point(src_key, mr.volume.index_to_lps([ni // 2, nj // 2, k]))
    m.set_crosshair_visible(False)
    synthetic.heatmaps[0].set(visible=True, opacity=0.5, threshold=0.1)
    m.set_active(0)
    settle(qtbot, 200)
    assert [(vp.series, vp.plane) for vp in m.viewports[:3]] == [
        (src_key, "axial"), (ct_key, "axial"), (ct_key, "coronal")]
    for v in win.grid.visible_views():
        v.render_now()
    qtbot.wait(200)
    docs = "1" in (os.environ.get("HOUNSFIELD_SCREENSHOT"), os.environ.get("HOUNSFIELD_SCREENSHOTS"))
    out = (REPO / "docs" if docs else tmp_path) / "screenshot-mr-to-ct.png"
    assert win.screen().grabWindow(win.winId()).save(str(out))
    for d in hidden:
        d.show()
    m.set_crosshair_visible(True)
