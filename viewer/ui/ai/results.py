"""AI results in the viewer: a derived image opens as a series linked to its source (same frame of
reference: it scrolls with it), compared side by side or by flicker; heatmaps become layers over
the source's slices.  detections become markers the radiologist accepts, rejects, moves or
resizes.  Label maps become segmentations (provenance AUTOMATIC, the model's name and version)
in the segmentation editor, where they are edited like any segment.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import numpy as np

from viewer.ai.api import Results, heatmap_unit
from viewer.core.errors import HounsfieldError
from viewer.core.layers import HeatmapLayer, Marker, MarkerSet
from viewer.core.volume import Volume

_runs = itertools.count(1)
# where a heatmap starts drawing: a removed-noise map is non-zero wherever there was noise, so it
# shows only the stronger changes at first (the slider goes down to 0)
DEFAULT_THRESHOLDS = {"removed-noise": 0.3}


@dataclass
class ResultEntry:
    """One finished run as the viewer shows it."""

    title: str  # "CT denoising 1.0.0"
    source_key: str
    derived_keys: list[str] = field(default_factory=list)
    heatmaps: list[HeatmapLayer] = field(default_factory=list)
    marker_sets: list[MarkerSet] = field(default_factory=list)
    label_maps: list = field(default_factory=list)
    segmentations: list = field(default_factory=list)  # viewer.core.segmentation.Segmentation, editable
    detections: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def summary(self) -> str:
        p = self.provenance
        params = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in p.get("parameters", {}).items())
        device = p.get("device", "")
        secs = p.get("wall_seconds")
        timing = f", {secs:.1f} s" if isinstance(secs, (int, float)) else ""
        return f"{params} · {device}{timing}" if params else f"{device}{timing}"


def derived_volume(source: Volume, array: np.ndarray, affine: np.ndarray, description: str, modality: str,
                   units: str, run: int) -> Volume:
    """The result image with its source's patient and frame of reference, as a new series."""
    src = source.source
    uid = f"{src.series_instance_uid or 'series'}.ai{run}"
    info = dataclasses.replace(src, series_instance_uid=uid, series_description=description, series_number=None,
                               sop_instance_uids=(), sop_class_uid="", path="")
    return Volume(array, affine, modality=modality or source.modality, units=units or source.units,
                  window=source.window, source=info)


def apply_results(window, source_key: str, results: Results) -> ResultEntry:
    """Show ``results`` of a run on ``source_key`` in ``window`` (a MainWindow)."""
    model, session = window.model, window.session
    source = model.series.get(source_key)
    if source is None:
        raise HounsfieldError("The series the AI ran on was closed before the results came; run it again.")
    prov = results.provenance
    title = f"{prov.get('plugin_name', 'AI')} {prov.get('plugin_version', '')}".strip()
    entry = ResultEntry(title, source_key, notes=list(results.notes), provenance=dict(prov),
                        label_maps=list(results.label_maps), detections=list(results.detections))
    segments_ui = getattr(window, "segments", None)
    for lm in results.label_maps:
        if segments_ui is None or tuple(lm.array.shape) != tuple(source.volume.shape) \
                or not np.allclose(lm.affine, source.volume.affine, atol=1e-3):
            entry.notes.append(f"The label map {lm.name} is not on the image's grid; it was not opened for editing.")
            continue
        from viewer.ai.outputs import label_map_segments

        entry.segmentations.append(segments_ui.add_label_map(
            source_key, lm.array, label_map_segments(lm), name=f"{lm.name} [{title}]",
            algorithm_name=prov.get("plugin_name", "AI"), algorithm_version=prov.get("plugin_version", "")))
    run = next(_runs)
    for n, img in enumerate(results.images):
        vol = derived_volume(source.volume, img.array, img.affine, f"AI: {img.name}", img.modality,
                             img.units, run)
        key = f"{source_key}#ai{run}.{n}"
        state = session.add_volume(vol, key, slots=[1], window=source.window)
        state.set_window(*source.window)
        entry.derived_keys.append(key)
    for hm in results.heatmaps:
        arr = np.ascontiguousarray(hm.array, dtype=np.float32)
        layer = HeatmapLayer(hm.name, Volume(arr, np.asarray(hm.affine, np.float64), modality="OT", units=""),
                             hm.description, provenance=f"{title} ({hm.kind})",
                             threshold=DEFAULT_THRESHOLDS.get(hm.kind, 0.1),
                             unit=heatmap_unit(hm.kind, hm.unit), full_scale=float(hm.full_scale))
        source.add_heatmap(layer)
        entry.heatmaps.append(layer)
    if results.detections:
        markers = [Marker(np.asarray(d.center_lps, np.float64), np.asarray(d.size_mm, np.float64), float(d.score),
                          d.label, d.description) for d in results.detections]
        ms = MarkerSet(f"{title} detections", markers, provenance=title)
        source.add_marker_set(ms)
        entry.marker_sets.append(ms)
    if entry.derived_keys:
        model.compare(source_key, entry.derived_keys[0])
    return entry


def flicker(model, entry: ResultEntry) -> int | None:
    """Swap original and result in the active slot (or slot 0), keeping zoom and pan; the slot."""
    if not entry.derived_keys:
        return None
    pair = (entry.source_key, entry.derived_keys[0])
    slot = model.active if model.viewports[model.active].series in pair else 0
    if model.viewports[slot].plane not in ("axial", "coronal", "sagittal"):
        slot = 0
    shown = model.viewports[slot].series
    model.show_series(slot, pair[1] if shown == pair[0] else pair[0], keep_view=True)
    return slot


def remove_entry(window, entry: ResultEntry) -> None:
    """Take a result away: its heatmaps leave the source, its series close."""
    model = window.model
    source = model.series.get(entry.source_key)
    for layer in entry.heatmaps:
        if source is not None:
            source.remove_heatmap(layer)
    for ms in entry.marker_sets:
        if source is not None:
            source.remove_marker_set(ms)
    for key in entry.derived_keys:
        for slot, vp in enumerate(model.viewports):
            if vp.series == key:
                model.show_series(slot, entry.source_key if source is not None else None, keep_view=True)
    window.session.release_unshown()
