"""viewer.ai.interactive: the crop a click is run on, the prompts as a DICOM parameter, and the
method a promptable plugin's card measured best (the click-to-segment tool's default)."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.ai import interactive as ia
from viewer.ai.api import Box, Point, Prompts
from viewer.core.volume import Volume


def oblique_volume() -> Volume:
    """A 40 x 60 x 50 volume (k, j, i) with 0.8 x 0.8 x 2.5 mm voxels, rotated and shifted."""
    c, s = np.cos(0.3), np.sin(0.3)
    a = np.eye(4)
    a[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.8, 0.8, 2.5])
    a[:3, 3] = (-20.0, 31.0, 100.0)
    arr = np.arange(40 * 60 * 50, dtype=np.int32).reshape(40, 60, 50).astype(np.int16)
    return Volume(arr, a, modality="CT", units="HU", rescale=(1.0, -1024.0))


def test_the_crop_holds_the_prompts_and_places_them_where_they_were():
    vol = oblique_volume()
    p = vol.index_to_lps([25.0, 30.0, 20.0])
    box = ia.prompt_crop(vol, Prompts((Point(tuple(p)),)), margin_mm=10.0)
    # a point is one voxel (2.5 mm at most): the crop reaches 0.85 x 2.5 + 16 = 18.1 mm either way,
    # 7.25 slices of 2.5 mm and 22.7 voxels of 0.8 mm
    assert [(s.start, s.stop) for s in box] == [(12, 29), (7, 54), (2, 49)]
    crop = ia.crop_volume(vol, box)
    assert crop.shape == (17, 47, 47) and crop.rescale == vol.rescale
    # the same LPS point names the same voxel value in the crop as in the volume
    i, j, k = np.rint(crop.lps_to_index(p)).astype(int)
    assert crop.array[k, j, i] == vol.array[20, 30, 25]
    # the previous mask rides along on the same grid
    prev = np.zeros(vol.shape, bool)
    prev[20, 30, 25] = True
    inputs = ia.crop_inputs(vol, box, prev)
    assert inputs["previous"].array.dtype == np.uint8 and inputs["previous"].array[k, j, i] == 1
    assert np.allclose(inputs["previous"].affine, crop.affine)
    # or already cut to the crop (the viewer reads the mask there only): the same input
    cut = ia.crop_inputs(vol, box, prev[box])["previous"]
    assert np.array_equal(cut.array, inputs["previous"].array) and np.allclose(cut.affine, crop.affine)


def test_a_large_mask_or_box_widens_the_crop_and_it_stops_at_the_volume():
    vol = oblique_volume()
    p = vol.index_to_lps([25.0, 30.0, 20.0])
    small = ia.prompt_crop(vol, Prompts((Point(tuple(p)),)), margin_mm=5.0)
    wide = ia.prompt_crop(vol, Prompts((Point(tuple(p)),)), (slice(15, 26), slice(10, 50), slice(5, 45)),
                          margin_mm=5.0)
    assert all(w.start <= s.start and w.stop >= s.stop for w, s in zip(wide, small))
    assert wide != small
    whole = ia.prompt_crop(vol, Prompts((), Box(tuple(vol.index_to_lps([0, 0, 0])),
                                                tuple(vol.index_to_lps([49, 59, 39])))))
    assert [(s.start, s.stop) for s in whole] == [(0, 40), (0, 60), (0, 50)]


def test_result_mask_takes_the_label_map_of_the_crop():
    from viewer.ai.api import LabelMap, Results

    box = (slice(2, 5), slice(0, 4), slice(1, 3))
    lm = np.zeros((3, 4, 2), np.uint8)
    lm[1, 2, 1] = 1
    m = ia.result_mask(Results(label_maps=[LabelMap(lm, np.eye(4), [])]), box)
    assert m.dtype == bool and m.sum() == 1 and m[1, 2, 1]
    assert not ia.result_mask(Results(), box).any()


def test_prompts_as_one_line_without_commas_and_back():
    prompts = Prompts((Point((1.25, -2.0, 30.0)), Point((4.0, 5.5, -6.04), False)),
                      Box((0.0, 1.0, 2.0), (10.0, 11.0, 12.5)))
    text = ia.format_prompts(prompts)
    assert "," not in text and text.startswith("+(1.2") and "-(4.0 5.5 -6.0)" in text
    back = ia.parse_prompts(text)
    assert [p.positive for p in back.points] == [True, False]
    assert np.allclose(back.points[1].lps, (4.0, 5.5, -6.0)) and np.allclose(back.box.hi_lps, (10.0, 11.0, 12.5))
    assert not ia.parse_prompts("")


def test_the_default_method_is_the_cards_best_one_click_dice():
    from viewer.ai.discovery import Registry

    try:
        info = Registry().get("lesion-segmentation")
    except Exception:
        pytest.skip("the lesion-segmentation plugin is not installed")
    dice = ia.one_click_dice(info)
    assert set(dice) == {"network", "geodesic", "region-growing"}
    assert ia.best_method(info) == max(dice, key=dice.get)
