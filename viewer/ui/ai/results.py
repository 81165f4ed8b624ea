"""AI results in the viewer: the run's ``Results`` go into the window's ``Workspace``
(``Workspace.apply``: the one conversion, also used by ``hounsfield run``), which puts heatmaps,
detection sets and editable segmentations (provenance AUTOMATIC, the model's name and version, the
model's label map kept) on the source series and opens derived images as series linked to it.
Here the derived images are shown (side by side with the source, or by flicker); a result is an
``Applied`` of the workspace (``workspace.results``).
"""

from __future__ import annotations

from viewer.ai.api import Results
from viewer.core.ai_results import DEFAULT_THRESHOLDS, derived_volume, same_scale  # noqa: F401 (re-exported)
from viewer.core.errors import HounsfieldError
from viewer.core.workspace import Applied


def apply_results(window, source_key: str, results: Results) -> Applied:
    """Put ``results`` of a run on ``source_key`` into ``window``'s workspace and show them."""
    model, session = window.model, window.session
    source = model.series.get(source_key)
    if source is None:
        raise HounsfieldError("The series the AI ran on was closed before the results came; run it again.")
    step = window.workspace.apply(results, series=source.open_series)
    for derived in step.derived:
        # a denoised CT in the window the reader has the original in, so that the two compare; a
        # synthetic CT from an MR in its own (the MR's window showed its bone alone)
        shared = source.window if same_scale(source.volume, derived.volume) else None
        state = session.show_open_series(derived, slots=[1], window=shared)
        if shared is not None:
            state.set_window(*shared)
    if step.derived:
        model.compare(source_key, step.derived_keys[0])
    return step


def flicker(model, entry: Applied) -> int | None:
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


def remove_entry(window, entry: Applied) -> None:
    """Take a result away: its heatmaps and detections leave the source, its series close; its
    segmentations stay in the Segments panel."""
    model = window.model
    source = model.series.get(entry.source_key)
    for key in entry.derived_keys:
        for slot, vp in enumerate(model.viewports):
            if vp.series == key:
                model.show_series(slot, entry.source_key if source is not None else None, keep_view=True)
    window.session.release_unshown()
    window.workspace.dismiss(entry)
