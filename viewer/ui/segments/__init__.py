"""Segment editing in the main window: a "Segment" menu (tools, undo/redo, operations, import and
export), the "Segments" dock, the editing tools of the 2D views and crash recovery.

``SegmentsFeature`` is what the main window installs (``window.features.segments``); the segmentations
are overlays of the series in the window's workspace, edited through ``SegmentsController``.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog

from viewer.core.errors import HounsfieldError
from viewer.ui.actions import Command, tool_commands
from viewer.ui.feature import Feature
from viewer.ui.segments import click_tool, tools
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


class SegmentsFeature(Feature):
    name = "segments"

    def __init__(self, window, workspace):
        super().__init__(window, workspace)
        c = self.controller = SegmentsController(window, workspace)
        tools.register(c)
        self.restore_bar = RestoreBar(c)
        window.centralWidget().layout().insertWidget(1, self.restore_bar)  # under the message bar
        menu = self.menu = self.add_menu("&Segment")
        window.addToolBarBreak()  # a row of its own: the tools and Click to segment's method, Accept, Discard
        toolbar = self.toolbar = window.addToolBar("Segment")
        toolbar.setObjectName("segment_toolbar")
        model, table = window.model, self.commands
        self.tool_actions = {}
        for cmd in tool_commands("segment", "Segment", model.tools, prefix=""):  # titles, keys: viewer.core.tools
            act = table.add(cmd, lambda on, n=cmd.name: model.set_tool(n if on else "wl"))
            menu.addAction(act)
            toolbar.addAction(act)
            self.tool_actions[cmd.name] = act
        model.tool_changed.connect(self._sync_tool)
        menu.addSeparator()
        fns = {
            "undo": lambda: self.click.undo() or c.undo(),  # with Click to segment: back one click
            "redo": lambda: self.click.redo() or c.redo(),
            "fill_between": lambda: self.run(lambda ed, s: ed.fill_between_slices(s)),
            "smooth": lambda: self.run(lambda ed, s: ed.smooth(s, "closing", 2.0)),
            "smooth_median": lambda: self.run(lambda ed, s: ed.smooth(s, "median", 2.0)),
            "smooth_opening": lambda: self.run(lambda ed, s: ed.smooth(s, "opening", 2.0)),
            "islands": lambda: self.run(lambda ed, s: ed.islands(s, keep_largest=True)),
            "remove_small": lambda: self.run(lambda ed, s: ed.islands(s, keep_largest=False, min_voxels=50)),
            "brush_larger": lambda: self.resize_brush(1.25),
            "brush_smaller": lambda: self.resize_brush(0.8),
            "import": self.import_file,
            "export": self.export_file,
        }
        self.actions = {}
        for name, (text, keys) in OPERATIONS.items():
            act = table.add(Command(f"segment_{name}", text, "Segment", keys), fns[name])
            self.actions[name] = act
            menu.addAction(act)
            if name in ("redo", "remove_small", "brush_smaller"):
                menu.addSeparator()
        logical = menu.addMenu("Combine with segment")
        logical.aboutToShow.connect(lambda: self._fill_logical(logical))
        from viewer.ui.segments.panel import SegmentsPanel

        self.panel = SegmentsPanel(self)
        dock = self.dock = self.add_dock("Segments", "segments", self.panel)
        menu.addSeparator()
        menu.addAction(table.add(Command("segments_dock", "Segments", "Segment"), action=dock.toggleViewAction()))
        model.tool_changed.connect(lambda: dock.show() if model.tool in tools.TOOLS else None)
        self.click = click_tool.install(self)  # Click to segment (its toolbar widgets, Accept, Discard)

    def _sync_tool(self) -> None:
        for name, act in self.tool_actions.items():
            act.setChecked(self.window.model.tool == name)

    def run(self, fn) -> None:
        """``fn(editor, segment)`` on the active segment, one undoable step."""
        ed = self.controller.editor()
        seg = self.controller.segmentation()
        s = seg.active_segment if seg is not None else None
        if ed is None or s is None:
            self.window.show_error("Choose a segment first (Segments panel).")
            return
        try:
            fn(ed, s)
        except (HounsfieldError, ValueError) as exc:
            self.window.show_error(str(exc))

    def resize_brush(self, factor: float) -> None:
        c = self.controller
        c.set_setting(brush_mm=float(min(100.0, max(0.5, round(c.settings.brush_mm * factor * 2) / 2))))

    def import_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Load segmentation", "",
                                              "Segmentations (*.dcm *.nii *.nii.gz *.nrrd *.mha);;All files (*)")
        if path:
            try:
                self.controller.import_file(path)
            except HounsfieldError as exc:
                self.window.show_error(str(exc))

    def export_file(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export segmentation", "segmentation.seg.dcm",
                                              "DICOM SEG (*.dcm);;NIfTI (*.nii.gz);;NRRD (*.nrrd)")
        if path:  # written off the UI thread, from a copy (viewer.ui.measure.export)
            from viewer.ui.measure.export import segmentation_export

            segmentation_export(self.window, path)

    def _fill_logical(self, menu) -> None:
        menu.clear()
        seg = self.controller.segmentation()
        s = seg.active_segment if seg is not None else None
        others = [o for o in (seg.segments if seg is not None else []) if o is not s]
        if s is None or not others:
            menu.addAction("Needs two segments").setEnabled(False)
            return
        for op, text in (("union", "Add"), ("subtract", "Subtract"), ("intersect", "Intersect with")):
            for o in others:
                act = menu.addAction(f"{text} {o.name}")
                act.triggered.connect(lambda _c=False, op=op, o=o: self.run(lambda ed, s: ed.logical(s, op, o)))

    def shutdown(self) -> None:
        self.click.shutdown()
        self.controller.close()  # journals synced and closed: what was not exported is offered next time
