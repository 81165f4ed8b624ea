"""Opening a SEG, an SR or an RT structure set (File > Open file, ``hounsfield FILE``, a double-click
in the study browser) shows it on its images: the session opens the image series it refers to
(found beside the file, see ``viewer.core.references``) and says ``object_opened``; here the
object goes onto that series: a SEG or an RT structure set as segments, an SR's measurements into
the measurements table (drawn where their points lie on the images).

``install(window)`` is the one hook the main window calls; the features do the rest.
"""

from __future__ import annotations

from viewer.core.errors import HounsfieldError
from viewer.logs import log


def install(window) -> None:
    window.session.object_opened.connect(lambda obj, key: apply(window, obj, key))


def apply(window, obj, key: str) -> None:
    state = window.model.series.get(key)
    if state is None:
        return
    try:
        notes: list[str] = []
        if obj.kind == "sr":
            n = window.features.measure.controller.import_sr(obj.path, key)
            if n == 0:
                window.show_error(f"{obj.name} holds no measurements Hounsfield can show on these images.")
                return
            window.features.measure.dock.show()
            what = f"{n} measurement{'s' if n != 1 else ''}"
        elif obj.kind == "pm":  # an AI heatmap (viewer.core.io.parametric_map): onto the series as a heatmap
            from viewer.core.io.parametric_map import read_parametric_map

            layer = read_parametric_map(obj.path, state.volume)
            state.open_series.add_overlay(layer)
            what = f"the map {layer.name}"
        else:
            if obj.kind == "seg":
                from viewer.core.io.seg_dicom import read_dicom_seg

                seg = read_dicom_seg(obj.path, state.volume)
            else:
                from viewer.core.rtstruct import read_rtstruct

                seg, notes = read_rtstruct(obj.path, state.volume)
            window.features.segments.controller.attach(state, seg)
            window.features.segments.dock.show()
            what = f"{len(seg.segments)} segment{'s' if len(seg.segments) != 1 else ''}"
    except HounsfieldError as exc:
        window.show_error(str(exc))
        return
    except Exception as exc:  # one sentence for the user, the traceback to the log
        log.exception("opening %s failed", obj.kind)
        window.show_error(f"{obj.name} could not be shown on its images ({type(exc).__name__}); "
                          "details are in the log file.")
        return
    window.model.set_active(next((s for s, vp in enumerate(window.model.viewports) if vp.series == key),
                                 window.model.active))
    window.statusBar().showMessage(" ".join([f"Opened {obj.name} on its images: {what}.", *notes]), 15000)
