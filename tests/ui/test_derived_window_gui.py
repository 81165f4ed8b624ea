"""An AI result shown beside its original, in the window and in the screenshot tool's --compare:
a result on the original's scale shares its window, another keeps its own."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import data_path
from tests.ui.helpers import settle, wait_loaded

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_a_derived_series_keeps_its_own_window_unless_on_the_original_s_scale(make_window, qtbot, tmp_path,
                                                                               monkeypatch, modality):
    """The screenshot tool's --compare (and the window's own showing of results before it) gave
    MR-to-CT's synthetic CT the MR's W 852 L 469: the CT showed bone alone.  A CT made from the MR now
    opens in a CT's soft-tissue window (W 400 L 40) and keeps it through ``show_comparison``; a result
    in the MR's own values (a denoised MR) still takes the MR's window, so the two compare."""
    from viewer.ai.api import DerivedImage, Results
    from viewer.ui.ai.results import apply_results

    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "data"))
    win = make_window(layout="1x3", size=(1400, 900))
    win.open_path(str(data_path("brain-mr-t1")))
    wait_loaded(qtbot, win)
    mr = win.model.active_state
    assert mr.volume.modality == "MR"
    mr.set_window(469.0, 852.0)  # as the MR-to-CT screenshot showed it
    vol = mr.volume
    if modality == "CT":
        array = np.where(vol.real_values() > 50, 40, -1000).astype(np.int16)
        image = DerivedImage(array, vol.affine.copy(), "Synthetic CT", modality="CT", units="HU")
    else:
        image = DerivedImage(np.asarray(vol.array).copy(), vol.affine.copy(), "Denoised", modality="MR")
    entry = apply_results(win, mr.key, Results(images=[image], provenance={"plugin_id": "test", "plugin_name": "Test"}))
    settle(qtbot)
    derived = win.model.series[entry.derived_keys[0]]
    expected = (40.0, 400.0) if modality == "CT" else (469.0, 852.0)
    assert tuple(derived.window) == expected, derived.window
    from viewer.ui.screenshot import show_comparison  # --compare's step

    show_comparison(win, entry)
    settle(qtbot)
    assert tuple(derived.window) == expected and tuple(mr.window) == (469.0, 852.0)
    view = next(v for v in win.grid.visible_views() if v.state is derived)
    view.update_scene()
    assert f"W: {expected[1]:.0f}  L: {expected[0]:.0f}" in view.corners.text("bottom_right")
