"""Quitting with a segmentation that was never exported: ask Export / Quit without exporting /
Discard / Cancel.

The crash journal keeps every edit on this computer whatever the answer (and offers it again when
the series is opened), so the question is about a *file*: without an export no PACS, report or
colleague has the segmentation.  The window asks only when the user quits (File > Quit, Ctrl+Q,
or the window manager's close button), not when code closes it.
"""

from __future__ import annotations

import os

from PySide6.QtWidgets import QFileDialog, QMessageBox

from viewer.core.errors import HounsfieldError
from viewer.core.segmentation import write_segmentation_file
from viewer.logs import log

EXPORT, KEEP, DISCARD, CANCEL = "export", "keep", "discard", "cancel"


def unexported(window) -> list[tuple[object, object]]:
    """(OpenSeries, EditableSegmentation) pairs of the window's workspace with segments changed since
    their last export."""
    return [(s, ed) for s in window.workspace for ed in s.segmentations if ed.unexported and ed.segments]


def _describe(pairs) -> str:
    names = []
    for series, seg in pairs:
        src = series.volume.source
        series = src.series_description or (f"series {src.series_number}" if src.series_number else "this series")
        n = len(seg.segments)
        names.append(f'"{seg.name}" of {series} ({n} segment{"s" if n != 1 else ""})')
    return "; ".join(names)


def ask(window, pairs) -> str:
    """The user's answer: EXPORT, KEEP, DISCARD or CANCEL."""
    box = QMessageBox(window)
    box.setObjectName("unexported_segmentation")
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Quit Hounsfield")
    one = len(pairs) == 1
    box.setText(f"The segmentation{'' if one else 's'} {_describe(pairs)} {'has' if one else 'have'} "
                "changes that were never exported.")
    box.setInformativeText(
        "If you quit without exporting, the edits stay only on this computer and are offered again when "
        "you open this series; no file, PACS or colleague has them. Discard deletes them for good.")
    buttons = {
        box.addButton("Export...", QMessageBox.ButtonRole.AcceptRole): EXPORT,
        box.addButton("Quit without exporting", QMessageBox.ButtonRole.DestructiveRole): KEEP,
        box.addButton("Discard edits", QMessageBox.ButtonRole.DestructiveRole): DISCARD,
        box.addButton(QMessageBox.StandardButton.Cancel): CANCEL,
    }
    for button, answer in buttons.items():
        button.setObjectName(f"quit_{answer}")
    box.setDefaultButton(next(b for b, a in buttons.items() if a == EXPORT))
    box.setEscapeButton(next(b for b, a in buttons.items() if a == CANCEL))
    box.exec()
    return buttons.get(box.clickedButton(), CANCEL)


def export_one(window, series, ed) -> bool:
    """Ask for a file and write ``ed`` (an EditableSegmentation of ``series``) there; False when the
    user cancelled or writing failed."""
    seg = ed.segmentation
    path, _ = QFileDialog.getSaveFileName(window, f"Export segmentation {seg.name}", "segmentation.seg.dcm",
                                          "DICOM SEG (*.dcm);;NIfTI (*.nii.gz);;NRRD (*.nrrd)")
    if not path:
        return False
    try:
        write_segmentation_file(seg, series.volume, path)
    except HounsfieldError as exc:
        window.show_error(str(exc))
        return False
    except Exception as exc:  # one sentence for the user, the traceback to the log
        log.exception("exporting a segmentation on quit failed")
        window.show_error(f"The segmentation could not be exported ({type(exc).__name__}); "
                          "choose another folder or format.")
        return False
    ed.mark_exported(path)
    log.info("exported a segmentation on quit (%s)", os.path.splitext(path)[1])
    return True


def confirm(window) -> bool:
    """True when the window may close (nothing unexported, or the user chose what happens to it)."""
    pairs = unexported(window)
    if not pairs:
        return True
    answer = ask(window, pairs)
    if answer == CANCEL:
        return False
    if answer == EXPORT:
        return all(export_one(window, series, ed) for series, ed in pairs)
    if answer == DISCARD:
        for _series, ed in pairs:
            ed.close(discard=True)
            ed.unexported = False
    return True  # KEEP: the journals stay and are offered when the series is opened again
