"""A Lung-RADS v2022 category *suggestion* for one nodule on a baseline screening CT, with the
rule that produced it.  A suggestion only: the radiologist assigns the category.

Source: American College of Radiology, Lung-RADS v2022 (released November 2022), assessment
categories table; summarised in Christensen J, Prosper AE, Wu CC, et al., "ACR Lung-RADS v2022:
Assessment Categories and Management Recommendations", CHEST 2024;165(3):738-753.  The baseline
rules used here (mean diameter = (long axis + short axis) / 2, rounded to 0.1 mm; volumes in mm3
rounded to whole numbers):

* 1: nodules with specific calcifications (complete, central, popcorn, concentric rings) or fat;
* 2: solid < 6 mm (< 113 mm3); part-solid < 6 mm total mean diameter (< 113 mm3); non-solid
  (ground-glass) < 30 mm (< 14,137 mm3); juxtapleural (including perifissural) solid nodules
  < 10 mm (< 524 mm3) with smooth margins and an oval, lentiform or triangular shape;
* 3: solid >= 6 to < 8 mm (>= 113 to < 268 mm3); part-solid >= 6 mm total with a solid
  component < 6 mm (< 113 mm3); non-solid >= 30 mm (>= 14,137 mm3);
* 4A: solid >= 8 to < 15 mm (>= 268 to < 1,767 mm3); part-solid with a solid component >= 6 to
  < 8 mm (>= 113 to < 268 mm3);
* 4B: solid >= 15 mm (>= 1,767 mm3); part-solid with a solid component >= 8 mm (>= 268 mm3);
* 4X (category 3 or 4 with features that raise suspicion, e.g. spiculation) is a reader's
  judgement and never suggested here; nor are the rules for new, growing or stable nodules
  (they need a prior scan), airway nodules or atypical cysts.

Whether a juxtapleural nodule has the benign shape is the reader's call too: the caller says so
with ``juxtapleural_benign``; calcification comes from the measurement (core >= 200 HU), which
cannot tell a benign pattern from an eccentric one, so it is stated as such in the rule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

VERSION = "Lung-RADS v2022"
CATEGORIES = ("0", "1", "2", "3", "4A", "4B", "4X")


@dataclass(frozen=True)
class Suggestion:
    category: str  # 1 | 2 | 3 | 4A | 4B
    rule: str  # the rule of the v2022 table that produced it, in words
    size_mm: float | None = None  # the mean diameter it used (0.1 mm), or None when by volume
    volume_mm3: int | None = None  # the volume it used (whole mm3), or None when by diameter

    def to_dict(self) -> dict:
        return {**asdict(self), "version": VERSION, "suggested": True}

    def text(self) -> str:
        return f"{VERSION} {self.category} (suggested): {self.rule}"


def round_mm(value: float) -> float:
    """To 0.1 mm, halves up (5.95 -> 6.0), as Lung-RADS reports mean diameters."""
    return math.floor(float(value) * 10.0 + 0.5 + 1e-9) / 10.0


def _band(value: float, cuts: tuple, unit: str) -> tuple[int, str]:
    """The band of ``value`` among ascending ``cuts`` and its words, e.g. '>= 6 to < 8 mm'."""
    n = sum(value >= c for c in cuts)
    fmt = (lambda c: f"{c:g} {unit}") if unit == "mm" else (lambda c: f"{c:,} {unit}")
    if n == 0:
        return 0, f"< {fmt(cuts[0])}"
    if n == len(cuts):
        return n, f">= {fmt(cuts[-1])}"
    return n, f">= {fmt(cuts[n - 1])} to < {fmt(cuts[n])}"


SOLID_MM, SOLID_MM3 = (6.0, 8.0, 15.0), (113, 268, 1767)
PART_TOTAL_MM, PART_TOTAL_MM3 = 6.0, 113
PART_SOLID_MM, PART_SOLID_MM3 = (6.0, 8.0), (113, 268)
GGN_MM, GGN_MM3 = 30.0, 14137
JUXTA_MM, JUXTA_MM3 = 10.0, 524


def suggest(nodule_type: str, mean_diameter_mm: float | None = None, *, solid_mean_diameter_mm: float | None = None,
            volume_mm3: float | None = None, solid_volume_mm3: float | None = None, calcified: bool = False,
            fat: bool = False, juxtapleural_benign: bool = False) -> Suggestion:
    """The baseline category for a nodule of ``nodule_type`` (solid | part-solid | ground-glass,
    also 'non-solid'/'GGN') from its mean diameter, or from its volume when no diameter is given.
    For a part-solid nodule the solid component's mean diameter (or volume) decides."""
    kind = {"non-solid": "ground-glass", "nonsolid": "ground-glass", "ggn": "ground-glass",
            "ground glass": "ground-glass", "partsolid": "part-solid", "part solid": "part-solid"}.get(
        nodule_type.lower(), nodule_type.lower())
    if kind not in ("solid", "part-solid", "ground-glass"):
        raise ValueError(f"unknown nodule type {nodule_type!r}")
    by_volume = mean_diameter_mm is None
    if by_volume and volume_mm3 is None:
        raise ValueError("a mean diameter or a volume is needed")
    size = None if by_volume else round_mm(mean_diameter_mm)
    vol = None if volume_mm3 is None else int(round(float(volume_mm3)))
    what, unit = (vol, "mm3") if by_volume else (size, "mm")
    measure = "volume" if by_volume else "mean diameter"

    def out(cat, rule):
        return Suggestion(cat, rule, size, vol if by_volume else None)

    if calcified or fat:
        why = "fat-containing" if fat else "calcified (core >= 200 HU; check for a benign pattern: complete, " \
                                           "central, popcorn or concentric rings)"
        return out("1", f"Nodule with specific calcification or fat: {why}.")
    if kind == "solid":
        juxta_cut = JUXTA_MM3 if by_volume else JUXTA_MM
        if juxtapleural_benign and what < juxta_cut:
            return out("2", f"Juxtapleural solid nodule < {juxta_cut:g} {unit} {measure} at baseline with benign "
                            "features (smooth margins; oval, lentiform or triangular).")
        n, band = _band(what, SOLID_MM3 if by_volume else SOLID_MM, unit)
        cat = ("2", "3", "4A", "4B")[n]
        return out(cat, f"Solid nodule {band} {measure} at baseline.")
    if kind == "ground-glass":
        cut = GGN_MM3 if by_volume else GGN_MM
        if what < cut:
            return out("2", f"Non-solid (ground-glass) nodule < {cut:,g} {unit} {measure} at baseline.")
        return out("3", f"Non-solid (ground-glass) nodule >= {cut:,g} {unit} {measure} at baseline.")
    # part-solid
    total_cut = PART_TOTAL_MM3 if by_volume else PART_TOTAL_MM
    if what < total_cut:
        return out("2", f"Part-solid nodule < {total_cut:g} {unit} total {measure} at baseline.")
    solid = solid_volume_mm3 if by_volume else solid_mean_diameter_mm
    if solid is None:
        raise ValueError("a part-solid nodule needs its solid component's size")
    solid = int(round(float(solid))) if by_volume else round_mm(solid)
    n, band = _band(solid, PART_SOLID_MM3 if by_volume else PART_SOLID_MM, unit)
    cat = ("3", "4A", "4B")[n]
    total = f">= {total_cut:g} {unit} total {measure}"
    return out(cat, f"Part-solid nodule {total} with a solid component {band} at baseline.")


def suggest_for(measurement: dict, *, juxtapleural_benign: bool = False, by: str = "diameter") -> Suggestion:
    """The suggestion for a ``measure.measure_nodule`` result (``by`` diameter or volume)."""
    kind = measurement["type"]
    if by == "volume":
        return suggest(kind, volume_mm3=measurement["volume_ml"] * 1000.0,
                       solid_volume_mm3=measurement.get("solid_volume_ml", 0.0) * 1000.0,
                       calcified=bool(measurement.get("calcified")), juxtapleural_benign=juxtapleural_benign)
    return suggest(kind, measurement["mean_diameter_mm"],
                   solid_mean_diameter_mm=measurement.get("solid_mean_diameter_mm"),
                   calcified=bool(measurement.get("calcified")), juxtapleural_benign=juxtapleural_benign)


def highest(suggestions) -> Suggestion | None:
    """The exam's category: that of its most suspicious nodule (None without nodules: category 1)."""
    order = {c: i for i, c in enumerate(CATEGORIES)}
    items = list(suggestions)
    return max(items, key=lambda s: order[s.category]) if items else None
