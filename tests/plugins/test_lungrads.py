"""Lung-RADS v2022 baseline suggestions (plugins/lung_nodules/lungrads.py) on constructed cases,
the boundaries included."""

from __future__ import annotations

import pytest

from plugins.lung_nodules.lungrads import highest, round_mm, suggest, suggest_for


@pytest.mark.parametrize("mm, cat", [(3.0, "2"), (5.9, "2"), (5.94, "2"), (5.95, "3"), (6.0, "3"), (7.9, "3"),
                                     (8.0, "4A"), (14.9, "4A"), (15.0, "4B"), (40.0, "4B")])
def test_solid_by_mean_diameter(mm, cat):
    s = suggest("solid", mm)
    assert s.category == cat
    assert s.rule.startswith("Solid nodule") and "at baseline" in s.rule
    assert s.size_mm == round_mm(mm)


def test_solid_rule_text_names_the_band():
    assert suggest("solid", 5.9).rule == "Solid nodule < 6 mm mean diameter at baseline."
    assert suggest("solid", 6.0).rule == "Solid nodule >= 6 mm to < 8 mm mean diameter at baseline."
    assert suggest("solid", 15.0).rule == "Solid nodule >= 15 mm mean diameter at baseline."


@pytest.mark.parametrize("solid_mm, cat", [(2.0, "3"), (5.9, "3"), (6.0, "4A"), (7.9, "4A"), (8.0, "4B")])
def test_part_solid_by_solid_component(solid_mm, cat):
    s = suggest("part-solid", 12.0, solid_mean_diameter_mm=solid_mm)
    assert s.category == cat, s.rule
    assert "solid component" in s.rule


def test_part_solid_small_total_is_2_whatever_the_component():
    assert suggest("part-solid", 5.9, solid_mean_diameter_mm=5.0).category == "2"
    assert suggest("part-solid", 6.0, solid_mean_diameter_mm=1.0).category == "3"
    with pytest.raises(ValueError):
        suggest("part-solid", 10.0)


@pytest.mark.parametrize("mm, cat", [(10.0, "2"), (29.9, "2"), (29.95, "3"), (30.0, "3"), (45.0, "3")])
def test_ground_glass(mm, cat):
    assert suggest("ground-glass", mm).category == cat
    assert suggest("GGN", mm).category == cat


def test_benign_features():
    calc = suggest("solid", 12.0, calcified=True)
    assert calc.category == "1" and "calcif" in calc.rule
    assert suggest("solid", 9.9, juxtapleural_benign=True).category == "2"
    assert "Juxtapleural" in suggest("solid", 9.9, juxtapleural_benign=True).rule
    assert suggest("solid", 10.0, juxtapleural_benign=True).category == "4A"  # the rule stops at 10 mm
    assert suggest("part-solid", 9.0, solid_mean_diameter_mm=7.0, juxtapleural_benign=True).category == "4A"


@pytest.mark.parametrize("mm3, cat", [(112, "2"), (113, "3"), (267.4, "3"), (268, "4A"), (1766, "4A"), (1767, "4B")])
def test_solid_by_volume(mm3, cat):
    s = suggest("solid", volume_mm3=mm3)
    assert s.category == cat and "volume" in s.rule and s.size_mm is None


def test_from_a_measurement_and_the_exam_category():
    m = {"type": "part-solid", "mean_diameter_mm": 14.2, "solid_mean_diameter_mm": 6.3, "volume_ml": 1.1,
         "solid_volume_ml": 0.15, "calcified": False}
    s = suggest_for(m)
    assert s.category == "4A" and s.to_dict()["suggested"] and s.text().startswith("Lung-RADS v2022 4A")
    assert suggest_for(m, by="volume").category == "4A"  # 150 mm3 solid component
    small = suggest("solid", 4.0)
    assert highest([small, s]) is s and highest([]) is None
