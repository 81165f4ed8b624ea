"""Interactive runs of a promptable plugin (click to segment): each click re-runs the plugin on a
local crop of the volume around the prompts, in the host's persistent worker (no Qt; torch only in
the worker).

    crop = prompt_crop(volume, prompts, mask_box)      # the index box the plugin needs to see
    inputs = crop_inputs(volume, crop, previous_mask)   # {"image": crop, "previous": its mask}
    handle = host.run(plugin, inputs, {"method": ...}, prompts=prompts)
    box, mask = result_mask(handle.result(), crop)      # the new mask on the full grid

Why a crop: a promptable plugin looks at a window around the prompts anyway, so sending the whole
volume (and getting whole-volume label maps and heatmaps back) costs copies and float conversions
that grow with the study; the crop keeps a click's cost independent of the study's size.  The
worker keeps the plugin (and its loaded network) between clicks (``viewer.ai.worker.load_plugin``).

The previous mask goes with each click as a second input (``previous``), so the plugin refines it
in one pass instead of replaying every click.  ``best_method`` picks, from a plugin's model card,
the ``method`` whose one-click Dice measured best.
"""

from __future__ import annotations

import re

import numpy as np

from viewer.ai.api import PluginInfo, Prompts
from viewer.core.volume import Volume

CROP_MM = 80.0  # the least half-size of the crop: a first click's coarse pass sees 64 x 2 mm around it
Box = tuple[slice, slice, slice]  # [k, j, i]


def prompt_points(prompts: Prompts) -> list:
    """Every LPS position a prompt set names: its points and its box's two corners."""
    pts = [p.lps for p in prompts.points]
    if prompts.box is not None:
        pts += [prompts.box.lo_lps, prompts.box.hi_lps]
    return pts


def prompt_crop(volume: Volume, prompts: Prompts, mask_box: Box | None = None, margin_mm: float = CROP_MM) -> Box:
    """The index box ([k, j, i] slices) around the prompts and the previous mask's box that a click's
    run sees: at least ``margin_mm`` around them, more for a large lesion (the plugin's window is about
    1.7 times the lesion's extent)."""
    pts = prompt_points(prompts)
    idx = [volume.lps_to_index(p)[::-1] for p in pts]  # (k, j, i)
    if mask_box is not None:
        idx += [np.array([s.start for s in mask_box], float), np.array([s.stop - 1 for s in mask_box], float)]
    if not idx:
        raise ValueError("no prompt to crop around")
    idx = np.asarray(idx, np.float64)
    lo, hi = idx.min(0), idx.max(0)
    vox = np.asarray(volume.spacing, np.float64)[::-1]  # (k, j, i) mm
    extent = float(((hi - lo + 1) * vox).max())
    reach = max(margin_mm, 0.85 * extent + 16.0) / vox
    shape = np.array(volume.shape)
    a = np.clip(np.floor(lo - reach), 0, shape - 1).astype(int)
    b = np.clip(np.ceil(hi + reach) + 1, a + 1, shape).astype(int)
    return tuple(slice(int(x), int(y)) for x, y in zip(a, b))


def crop_affine(volume: Volume, box: Box) -> np.ndarray:
    """The affine of ``volume``'s ``box``: its grid, starting at the box's corner."""
    k0, j0, i0 = (s.start for s in box)
    affine = volume.affine.copy()
    affine[:3, 3] = volume.index_to_lps([i0, j0, k0])
    return affine


def crop_volume(volume: Volume, box: Box, array: np.ndarray | None = None, modality: str | None = None) -> Volume:
    """``volume``'s ``box`` (or ``array``'s, on the same grid) as a Volume whose affine places it."""
    affine = crop_affine(volume, box)
    if array is None:
        return Volume(np.ascontiguousarray(volume.array[box]), affine, modality=volume.modality, units=volume.units,
                      rescale=tuple(volume.rescale), window=volume.window)
    return Volume(np.ascontiguousarray(array[box]), affine, modality=modality or "OT")


def crop_inputs(volume: Volume, box: Box, previous: np.ndarray | None = None) -> dict[str, Volume]:
    """The plugin's inputs for one click: the image crop, and the previous mask (bool, on the full
    grid or already cut to ``box``, which the viewer does to spare a whole-volume mask) on it."""
    inputs = {"image": crop_volume(volume, box)}
    if previous is not None:
        prev = previous.astype(np.uint8, copy=False)
        if prev.shape == tuple(s.stop - s.start for s in box):  # cut already (or the box is the volume)
            inputs["previous"] = Volume(np.ascontiguousarray(prev), crop_affine(volume, box), modality="SEG")
        else:
            inputs["previous"] = crop_volume(volume, box, prev, "SEG")
    return inputs


def result_mask(results, box: Box) -> np.ndarray:
    """The first label map of a run on the crop ``box`` as a box-sized bool mask (all False if none)."""
    shape = tuple(s.stop - s.start for s in box)
    for lm in getattr(results, "label_maps", ()):
        a = np.asarray(lm.array)
        if a.shape == shape:
            return a > 0
    return np.zeros(shape, bool)


def format_prompts(prompts: Prompts) -> str:
    """The prompts in one line without commas (a DICOM Algorithm Parameters value):
    ``+(x y z)`` a positive click, ``-(x y z)`` a negative one, ``box(x0 y0 z0 x1 y1 z1)``, LPS mm."""
    def xyz(c):
        return " ".join(f"{float(v):.1f}" for v in c)

    parts = [f"{'+' if p.positive else '-'}({xyz(p.lps)})" for p in prompts.points]
    if prompts.box is not None:
        parts.append(f"box({xyz(prompts.box.lo_lps)} {xyz(prompts.box.hi_lps)})")
    return " ".join(parts)


def parse_prompts(text: str) -> Prompts:
    """``format_prompts`` read back."""
    from viewer.ai.api import Box as PromptBox
    from viewer.ai.api import Point

    points, box = [], None
    for sign, body in re.findall(r"(\+|-|box)\(([^)]*)\)", text or ""):
        v = tuple(float(x) for x in body.split())
        if sign == "box" and len(v) == 6:
            box = PromptBox(v[:3], v[3:])
        elif len(v) == 3:
            points.append(Point(v, sign == "+"))
    return Prompts(tuple(points), box)


def one_click_dice(info: PluginInfo) -> dict[str, float]:
    """The model card's mean one-click Dice per method ("Dice, 1 click, <method> ... (mean)")."""
    out = {}
    methods = next((p.choices for p in info.parameters if p.name == "method"), ())
    for f in info.card.evaluation:
        m = re.match(r"Dice, 1 click, (.+) \(mean\)$", f.metric)
        if not m:
            continue
        said = m.group(1).lower()
        for name in methods:
            if said.startswith(name.replace("-", " ")) or said.startswith(name):
                out[name] = float(f.value)
    return out


def best_method(info: PluginInfo) -> str:
    """The ``method`` with the best mean one-click Dice on the card; the declared default without figures."""
    dice = one_click_dice(info)
    if dice:
        return max(dice, key=dice.get)
    return str(info.defaults().get("method", ""))
