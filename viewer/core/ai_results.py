"""Plugin results into overlays: the one conversion, used by the viewer, the Workspace and
``hounsfield run`` alike (no Qt, no VTK, no torch).

A plugin's ``Results`` (``viewer.ai.api``) hold derived images, label maps, detections and
heatmaps.  ``convert_results`` turns them into what the rest of the program edits and shows:

    derived image -> a ``Volume`` with the source's patient and frame of reference, as a new series
    label map     -> an editable ``Segmentation`` (AUTOMATIC, with the model's name and version)
    heatmap       -> a ``HeatmapLayer`` (float32 in [0, 1], its unit and starting threshold)
    detections    -> one ``MarkerSet`` the radiologist accepts, rejects, moves or resizes

The model's originals stay beside them (``Converted.results``: its label maps and detections,
untouched), so what a person changed can be measured and exported.  Only attributes of the
results are read here; core does not import the plugin host.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from viewer.core.layers import HeatmapLayer, Marker, MarkerSet
from viewer.core.segmentation import Segmentation, from_label_map
from viewer.core.volume import Volume

# where a heatmap starts drawing: a removed-noise map is non-zero wherever there was noise, so it
# shows only the stronger changes at first (the slider goes down to 0)
# where a heatmap starts hiding its low values: a detector's probability is 0.1-0.2 over most of the
# lungs (70 % of the chest CT's lung voxels above 0.1, 0.8 % above 0.2), which at 0.1 washed both lungs red
DEFAULT_THRESHOLDS = {"removed-noise": 0.3, "probability": 0.25}


@dataclass
class Converted:
    """One run's results as overlays of the series it ran on."""

    title: str  # "CT denoising 1.0.0"
    results: object  # the plugin's Results, kept as the model's original
    images: list[Volume] = field(default_factory=list)
    segmentations: list[Segmentation] = field(default_factory=list)
    originals: dict[str, np.ndarray] = field(default_factory=dict)  # segmentation uid -> the model's label map
    heatmaps: list[HeatmapLayer] = field(default_factory=list)
    marker_sets: list[MarkerSet] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)


def title_of(provenance: dict) -> str:
    return f"{provenance.get('plugin_name', 'AI')} {provenance.get('plugin_version', '')}".strip()


def label_map_segments(lm) -> list[dict]:
    """A plugin label map's segments as ``viewer.core.segmentation.from_label_map`` takes them."""
    return [{"label": seg.label, "name": seg.name, "color": seg.color, "description": seg.description,
             **({"type": seg.code} if seg.code else {})}
            for seg in lm.segments if seg.label != 0]


def on_grid(lm, source: Volume) -> bool:
    return tuple(lm.array.shape) == tuple(source.shape) and np.allclose(lm.affine, source.affine, atol=1e-3)


def label_map_segmentation(lm, source: Volume, *, name: str | None = None, algorithm_name: str = "AI",
                           algorithm_version: str = "", algorithm_type: str = "AUTOMATIC") -> Segmentation:
    """An editable segmentation of a plugin's label map on ``source``'s grid (provenance AUTOMATIC, or
    SEMIAUTOMATIC when a person's prompts guided the run)."""
    return from_label_map(source, lm.array, label_map_segments(lm), name=name or lm.name,
                          algorithm_name=algorithm_name, algorithm_version=algorithm_version,
                          algorithm_type=algorithm_type)


def same_scale(source: Volume, derived: Volume) -> bool:
    """Whether a derived image's values are on its source's scale (a denoised CT: HU in, HU out), so
    that the source's window fits it.  A synthetic CT made from an MR is not: in the MR's W 852 L 469
    it showed bone alone."""
    return derived.modality == source.modality and derived.units == source.units


def derived_volume(source: Volume, array: np.ndarray, affine: np.ndarray, description: str, modality: str,
                   units: str, run: int) -> Volume:
    """The result image with its source's patient and frame of reference, as a new series; it
    carries its source's window only where it is on the source's scale (``same_scale``), else none
    (``windowing.own_window`` then gives it one of its own)."""
    src = source.source
    uid = f"{src.series_instance_uid or 'series'}.ai{run}"
    info = dataclasses.replace(src, series_instance_uid=uid, series_description=description, series_number=None,
                               sop_instance_uids=(), sop_class_uid="", path="")
    out = Volume(array, affine, modality=modality or source.modality, units=units or source.units, source=info)
    if same_scale(source, out):
        out.window = source.window
    return out


def heatmap_layer(hm, title: str) -> HeatmapLayer:
    arr = np.ascontiguousarray(hm.array, dtype=np.float32)
    return HeatmapLayer(hm.name, Volume(arr, np.asarray(hm.affine, np.float64), modality="OT", units=""),
                        hm.description, provenance=f"{title} ({hm.kind})",
                        threshold=DEFAULT_THRESHOLDS.get(hm.kind, 0.1), unit=hm.display_unit,
                        full_scale=float(hm.full_scale))


def marker_set(detections, title: str) -> MarkerSet:
    markers = [Marker(np.asarray(d.center_lps, np.float64), np.asarray(d.size_mm, np.float64), float(d.score),
                      d.label, d.description, attributes=dict(getattr(d, "attributes", None) or {}))
               for d in detections]
    return MarkerSet(f"{title} detections", markers, provenance=title)


def convert_results(results, source: Volume, *, run: int = 1, images: bool = True) -> Converted:
    """``results`` of a run on ``source`` as overlays (see the module's docstring).  A label map off
    ``source``'s grid is not made editable; a note says so.  ``run`` numbers the derived series'
    UIDs; ``images=False`` leaves derived images out (a caller that writes them as they are)."""
    prov = dict(results.provenance)
    title = title_of(prov)
    out = Converted(title, results, notes=list(results.notes), provenance=prov)
    for lm in results.label_maps:
        if not on_grid(lm, source):
            out.notes.append(f"The label map {lm.name} is not on the image's grid; it was not opened for editing.")
            continue
        seg = label_map_segmentation(lm, source, name=f"{lm.name} [{title}]",
                                     algorithm_name=prov.get("plugin_name", "AI"),
                                     algorithm_version=prov.get("plugin_version", ""),
                                     algorithm_type=prov.get("algorithm_type", "AUTOMATIC"))
        if not getattr(lm, "visible", True):  # context, not the finding: opened hidden (2D outlines, 3D surfaces)
            seg.set_style(visible=False)
        out.segmentations.append(seg)
        out.originals[seg.uid] = np.asarray(lm.array).copy()
    if images:
        for img in results.images:
            out.images.append(derived_volume(source, img.array, img.affine, f"AI: {img.name}", img.modality,
                                             img.units, run))
    out.heatmaps = [heatmap_layer(hm, title) for hm in results.heatmaps]
    if results.detections:
        out.marker_sets.append(marker_set(results.detections, title))
    return out
