"""resources/: presets, colour maps and icons are found from the checkout (editable install) and
are complete; every command of the window has its icon file."""

from __future__ import annotations

import os

from viewer.paths import resources_dir
from viewer.ui.actions import COMMANDS, shortcut_rows
from viewer.ui.resources import colormaps, icon_path, presets_for


def test_ct_presets_on_number_keys():
    presets = {p.name: p for p in presets_for("CT")}
    assert [p.key for p in presets_for("CT")] == ["1", "2", "3", "4", "5", "6"]
    assert (presets["Lung"].center, presets["Lung"].width) == (-600, 1500)
    assert set(presets) == {"Soft tissue", "Lung", "Bone", "Brain", "Liver", "Mediastinum"}
    assert all(p.width > 0 for p in presets.values())


def test_mr_and_other_modalities_get_the_histogram_preset():
    for modality in ("MR", "PT", "OT"):
        (auto,) = presets_for(modality)
        assert auto.auto and auto.key == "1"


def test_colour_maps_are_valid_ramps_grey_first():
    maps = colormaps()
    assert next(iter(maps)) == "Grey" and len(maps) >= 3
    for points in maps.values():
        xs = [p[0] for p in points]
        assert xs[0] == 0.0 and xs[-1] == 1.0 and xs == sorted(xs)
        assert all(0.0 <= c <= 1.0 for p in points for c in p)


def test_icons_exist_and_the_sheet_lists_every_shortcut():
    assert (resources_dir() / "presets" / "window_level.json").is_file()
    for cmd in COMMANDS:
        if cmd.icon:
            assert os.path.isfile(icon_path(cmd.icon)), cmd.icon
    keys = {row[1] for row in shortcut_rows()}
    assert {"Ctrl+O", "F1", "Home", "PgDown", "1 - 9", "X", "I"} <= keys
