"""Segment editing in the main window: a "Segment" menu (tools, undo/redo, operations, import and
export), the "Segments" dock, the editing tools of the 2D views and crash recovery.

``install(window)`` is the one hook the main window calls.  Others (the AI host) add a plugin's
label map as an editable, AUTOMATIC segmentation with ``add_label_map(window, key, array, ...)``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog

from viewer.core.errors import HounsfieldError
from viewer.ui.segments import tools
from viewer.ui.segments.controller import SegmentsController
from viewer.ui.segments.restore_bar import RestoreBar

OPERATIONS = {  # name: (text, shortcut)
    "undo": ("Undo", ("Ctrl+Z",)),
    "redo": ("Redo", ("Ctrl+Y", "Ctrl+Shift+Z")),
    "fill_between": ("Fill between slices", ("Ctrl+Shift+I",)),
    "smooth": ("Smooth (closing 2 mm)", ()),
    "smooth_median": ("Smooth (median 2 mm)", ()),
    "smooth_opening": ("Remove spurs (opening 2 mm)", ()),
    "islands": ("Keep largest island", ()),
    "remove_small": ("Remove islands under 50 voxels", ()),
    "brush_larger": ("Larger brush", (".",)),
    "brush_smaller": ("Smaller brush", (",",)),
    "import": ("Load segmentation (DICOM SEG, NIfTI, NRRD)...", ()),
    "export": ("Export...", ()),
}


def add_label_map(window, key: str, array, segments: list[dict] | None = None, *, name: str = "AI segmentation",
                  algorithm_name: str = "", algorithm_version: str = ""):
    """Show a plugin's label map (on series ``key``'s grid) as an editable segmentation whose segments
    are AUTOMATIC, made by ``algorithm_name`` ``algorithm_version``.  ``segments``: [{"label", "name",
    "color", "code"}]."""
    return window.segments.add_label_map(key, array, segments, name=name, algorithm_name=algorithm_name,
                                         algorithm_version=algorithm_version)


def _run(window, fn) -> None:
    ed = window.segments.editor()
    seg = window.segments.segmentation()
    s = seg.active_segment if seg is not None else None
    if ed is None or s is None:
        window.show_error("Choose a segment first (Segments panel).")
        return
    try:
        fn(ed, s)
    except (HounsfieldError, ValueError) as exc:
        window.show_error(str(exc))


def _resize_brush(window, factor: float) -> None:
    c = window.segments
    c.set_setting(brush_mm=float(min(100.0, max(0.5, round(c.settings.brush_mm * factor * 2) / 2))))


def _import(window) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Load segmentation", "",
                                          "Segmentations (*.dcm *.nii *.nii.gz *.nrrd *.mha);;All files (*)")
    if path:
        try:
            window.segments.import_file(path)
        except HounsfieldError as exc:
            window.show_error(str(exc))


def _export(window) -> None:
    path, _ = QFileDialog.getSaveFileName(window, "Export segmentation", "segmentation.seg.dcm",
                                          "DICOM SEG (*.dcm);;NIfTI (*.nii.gz);;NRRD (*.nrrd)")
    if path:  # written off the UI thread, from a copy (viewer.ui.measure.export)
        from viewer.ui.measure.export import segmentation_export

        segmentation_export(window, path)


def install(window) -> SegmentsController:
    c = window.segments = SegmentsController(window, window.workspace)
    tools.register(c)
    layout = window.centralWidget().layout()
    c.restore_bar = RestoreBar(c)
    layout.insertWidget(1, c.restore_bar)  # under the message bar, above the views
    menu = window.menuBar().addMenu("&Segment")
    help_menu = getattr(window, "help_menu", None)
    if help_menu is not None:
        window.menuBar().insertMenu(help_menu.menuAction(), menu)
    group = QActionGroup(window)
    window.segment_tool_actions = {}
    for tool in window.model.tools.in_group("segment"):  # titles and keys: viewer.core.tools
        name, text, key = tool.name, tool.title, tool.shortcut
        act = QAction(text, window, checkable=True)
        act.setShortcut(QKeySequence(key))
        act.setToolTip(f"{text}  ({key})")
        act.triggered.connect(lambda on, n=name: window.model.set_tool(n if on else "wl"))
        group.addAction(act)
        menu.addAction(act)
        window.segment_tool_actions[name] = act
    window.addActions(list(window.segment_tool_actions.values()))

    def sync_tool():
        for name, act in window.segment_tool_actions.items():
            act.setChecked(window.model.tool == name)

    window.model.tool_changed.connect(sync_tool)
    menu.addSeparator()
    fns = {
        "undo": lambda: c.undo(),
        "redo": lambda: c.redo(),
        "fill_between": lambda: _run(window, lambda ed, s: ed.fill_between_slices(s)),
        "smooth": lambda: _run(window, lambda ed, s: ed.smooth(s, "closing", 2.0)),
        "smooth_median": lambda: _run(window, lambda ed, s: ed.smooth(s, "median", 2.0)),
        "smooth_opening": lambda: _run(window, lambda ed, s: ed.smooth(s, "opening", 2.0)),
        "islands": lambda: _run(window, lambda ed, s: ed.islands(s, keep_largest=True)),
        "remove_small": lambda: _run(window, lambda ed, s: ed.islands(s, keep_largest=False, min_voxels=50)),
        "brush_larger": lambda: _resize_brush(window, 1.25),
        "brush_smaller": lambda: _resize_brush(window, 0.8),
        "import": lambda: _import(window),
        "export": lambda: _export(window),
    }
    window.segment_actions = {}
    for name, (text, keys) in OPERATIONS.items():
        act = QAction(text, window)
        if keys:
            act.setShortcuts([QKeySequence(k) for k in keys])
            act.setToolTip(f"{text}  ({', '.join(keys)})")
        act.triggered.connect(lambda _c=False, fn=fns[name]: fn())
        window.segment_actions[name] = act
        window.addAction(act)
        menu.addAction(act)
        if name in ("redo", "remove_small", "brush_smaller"):
            menu.addSeparator()
    logical = menu.addMenu("Combine with segment")
    logical.aboutToShow.connect(lambda: _fill_logical(window, logical))
    from viewer.ui.segments.panel import SegmentsPanel

    window.segments_panel = SegmentsPanel(window)
    dock = window.segments_dock = QDockWidget("Segments", window)
    dock.setObjectName("segments")
    dock.setWidget(window.segments_panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.hide()
    menu.addSeparator()
    menu.addAction(dock.toggleViewAction())
    window.model.tool_changed.connect(lambda: dock.show() if window.model.tool in tools.TOOLS else None)
    return c


def _fill_logical(window, menu) -> None:
    menu.clear()
    seg = window.segments.segmentation()
    s = seg.active_segment if seg is not None else None
    others = [o for o in (seg.segments if seg is not None else []) if o is not s]
    if s is None or not others:
        menu.addAction("Needs two segments").setEnabled(False)
        return
    for op, text in (("union", "Add"), ("subtract", "Subtract"), ("intersect", "Intersect with")):
        for o in others:
            act = menu.addAction(f"{text} {o.name}")
            act.triggered.connect(lambda _c=False, op=op, o=o: _run(window, lambda ed, s: ed.logical(s, op, o)))
