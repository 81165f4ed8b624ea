"""AI results in the viewer: a derived image opens as a series linked to its source (same frame of
reference: it scrolls with it), compared side by side or by flicker; heatmaps become layers over
the source's slices.  detections become markers the radiologist accepts, rejects, moves or
resizes.  Label maps become segmentations (provenance AUTOMATIC, the model's name and version)
in the segmentation editor, where they are edited like any segment.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from viewer.ai.api import Results
from viewer.core.ai_results import DEFAULT_THRESHOLDS, convert_results, derived_volume  # noqa: F401 (re-exported)
from viewer.core.errors import HounsfieldError
from viewer.core.layers import HeatmapLayer, MarkerSet

_runs = itertools.count(1)


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


def apply_results(window, source_key: str, results: Results) -> ResultEntry:
    """Show ``results`` of a run on ``source_key`` in ``window`` (a MainWindow)."""
    model, session = window.model, window.session
    source = model.series.get(source_key)
    if source is None:
        raise HounsfieldError("The series the AI ran on was closed before the results came; run it again.")
    run = next(_runs)
    conv = convert_results(results, source.volume, run=run)  # the one conversion (viewer.core.ai_results)
    entry = ResultEntry(conv.title, source_key, notes=conv.notes, provenance=conv.provenance,
                        label_maps=list(results.label_maps), detections=list(results.detections))
    segments_ui = getattr(window, "segments", None)
    for seg in conv.segmentations:
        if segments_ui is None:
            entry.notes.append(f"The label map {seg.name} could not be opened for editing.")
            continue
        entry.segmentations.append(segments_ui.attach(source, seg, exported=False))
    for n, vol in enumerate(conv.images):
        key = f"{source_key}#ai{run}.{n}"
        state = session.add_volume(vol, key, slots=[1], window=source.window, derived_from=source.open_series)
        state.set_window(*source.window)
        entry.derived_keys.append(key)
    for layer in conv.heatmaps:
        source.open_series.add_overlay(layer)
        entry.heatmaps.append(layer)
    for ms in conv.marker_sets:
        source.open_series.add_overlay(ms)
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
            source.open_series.remove_overlay(layer)
    for ms in entry.marker_sets:
        if source is not None:
            source.open_series.remove_overlay(ms)
    for key in entry.derived_keys:
        for slot, vp in enumerate(model.viewports):
            if vp.series == key:
                model.show_series(slot, entry.source_key if source is not None else None, keep_view=True)
    window.session.release_unshown()
