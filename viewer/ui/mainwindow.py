"""The main window: study browser (dock), the view grid, toolbar, menus and status bar.

It holds the ``Workspace`` (the opened series and their overlays, no Qt), the ``ViewerModel``
(viewing state), the ``Session`` (loading and VTK images), the command table (``self.commands``:
menus, toolbars and the F1 sheet are made from it; the ``cmd_*`` methods are the commands of
``actions.COMMANDS``) and the features (``self.features``: PACS, AI, measure, segments), each given
the workspace.
"""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

import viewer
from viewer.core.viewstate import LAYOUTS, ViewerModel
from viewer.core.windowing import auto_window
from viewer.core.workspace import SAVE_FAILED, Workspace
from viewer.logs import log
from viewer.ui import closing
from viewer.ui import objects as objects_ui
from viewer.ui.actions import Command, build_actions
from viewer.ui.ai import AIFeature
from viewer.ui.browser import StudyBrowser
from viewer.ui.changes import ChangesFeature
from viewer.ui.compare import CompareFeature
from viewer.ui.feature import Features
from viewer.ui.measure import MeasureFeature
from viewer.ui.messagebar import MessageBar
from viewer.ui.nodules import NodulesFeature
from viewer.ui.pacs import PacsFeature
from viewer.ui.priors import PriorsFeature
from viewer.ui.resources import colormaps, presets_for
from viewer.ui.segments import SegmentsFeature
from viewer.ui.session import Session
from viewer.ui.settings import add_recent, open_settings, read_bool, recent_paths
from viewer.ui.viewgrid import ViewGrid


class MainWindow(QMainWindow):
    def __init__(self, settings=None):
        super().__init__()
        self.setWindowTitle("Hounsfield")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else open_settings()
        self.workspace = Workspace()  # the opened series and their overlays (viewer.core.workspace)
        self.model = ViewerModel(self.workspace.tools)
        self._restore_model_settings()
        self.session = Session(self.model, self.workspace, self)
        self.grid = ViewGrid(self.model, self.session)
        self.message_bar = MessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.grid, 1)
        self.setCentralWidget(central)
        self.browser = StudyBrowser()
        self.browser_dock = QDockWidget("Studies", self)
        self.browser_dock.setObjectName("studies")
        self.browser_dock.setWidget(self.browser)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.browser_dock)
        self._build_status_bar()
        self.commands = build_actions(self)
        self._build_menus()
        ws, features = self.workspace, Features()
        self.features = features
        features.add(PacsFeature(self, ws))
        self._build_toolbar()
        features.add(AIFeature(self, ws))
        features.add(PriorsFeature(self, ws))  # priors, hanging protocols, cine (issue 19)
        features.add(MeasureFeature(self, ws))
        features.add(SegmentsFeature(self, ws))
        features.add(NodulesFeature(self, ws))  # the lung-nodule read (issue 14)
        features.add(ChangesFeature(self, ws))  # lesion change over time (issue 19)
        features.add(CompareFeature(self, ws))  # registration, linked scrolling through it, fusion (issue 19)
        objects_ui.install(self)  # a SEG, SR or RTSTRUCT opened as a file goes onto its images
        features.measure.controller.follow_segments(features.segments.controller)  # segment statistics
        self._connect()
        self._sync_actions()
        self._restore_window_settings()
        self.sheet = None

    # construction
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.readout = QLabel("")
        self.readout.setMinimumWidth(420)
        bar.addWidget(self.readout, 1)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop loading (Esc); what is loaded stays")
        self.cancel_button.clicked.connect(self.cmd_cancel_load)
        self.cancel_button.hide()
        self.tool_label = QLabel("")
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)
        bar.addPermanentWidget(self.tool_label)

    def _build_menus(self) -> None:
        a, mb = self.commands, self.menuBar()
        file_menu = mb.addMenu("&File")
        for name in ("open_folder", "open_file"):
            file_menu.addAction(a[name])
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addAction(a["open_demo"])
        file_menu.addSeparator()
        file_menu.addAction(a["cancel_load"])
        file_menu.addSeparator()
        file_menu.addAction(a["quit"])
        view = mb.addMenu("&View")
        for name in ("layout_1x1", "layout_1x3", "layout_2x2", "maximise", None, "crosshair", "link", None,
                     "next_slice", "previous_slice", "next_page", "previous_page", None,
                     "reset", "reset_oblique"):
            view.addAction(a[name]) if name else view.addSeparator()
        view.addSeparator()
        view.addAction(a.add(Command("studies", "Studies", "View", ("Ctrl+B",)),
                             action=self.browser_dock.toggleViewAction()))
        image = mb.addMenu("&Image")
        self.preset_menu = image.addMenu("Window/level &presets")
        image.addAction(a["default_window"])
        image.addAction(a["invert"])
        self.colormap_menu = image.addMenu("&Colour map")
        self.colormap_group = QActionGroup(self)
        for name in colormaps():
            act = QAction(name, self, checkable=True)
            act.triggered.connect(lambda _c=False, n=name: self.cmd_colormap(n))
            self.colormap_group.addAction(act)
            self.colormap_menu.addAction(act)
        tools = mb.addMenu("&Tools")
        a.fill(tools, self._view_tools())
        self.help_menu = help_menu = mb.addMenu("&Help")
        help_menu.addAction(a["shortcuts"])
        help_menu.addAction(a["about"])
        self._rebuild_recent()

    def _view_tools(self) -> list[str]:
        """The commands of the viewing tools (viewer.core.tools), in the registry's order."""
        return [f"tool_{name}" for name in self.model.tools.names("view")]

    def _build_toolbar(self) -> None:
        a = self.commands
        tb = self.addToolBar("Tools")
        tb.setObjectName("tools")
        tb.setMovable(False)
        a.fill(tb, ["open_folder", None, *self._view_tools(), None, "layout_1x1", "layout_1x3", "layout_2x2", None])
        self.preset_button = QToolButton()
        self.preset_button.setText("W/L presets")
        self.preset_button.setToolTip("Window/level presets (number keys)")
        self.preset_button.setMenu(self.preset_menu)
        self.preset_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        tb.addWidget(self.preset_button)
        a.fill(tb, ["invert", None, "crosshair", "link", "reset", None, "shortcuts"])

    def _connect(self) -> None:
        s, m = self.session, self.model
        s.message.connect(self.show_error)
        self.workspace.save_failed.connect(self._on_save_failed)
        s.note.connect(lambda text: self.statusBar().showMessage(text, 10000))
        s.progress.connect(self._on_progress)
        s.scanned.connect(self.browser.add_scan)
        s.series_opened.connect(self._on_series_opened)
        for view in self.grid.slice_views:
            view.readout.connect(self.readout.setText)
            view.series_dropped.connect(self._on_series_dropped)
        self.browser.open_requested.connect(lambda payload: self.open_payload(payload, None))
        m.active_changed.connect(lambda _slot: self._sync_actions())
        m.layout_changed.connect(self._sync_actions)
        m.tool_changed.connect(self._sync_actions)
        m.viewport_changed.connect(lambda _slot: self._sync_actions())

    # opening
    def open_path(self, path: str, series: str | None = None, slots=None) -> None:
        path = os.path.abspath(os.path.expanduser(path))
        self.message_bar.dismiss()
        # the standard planes come back when the new series is shown, not before: a failed open changes nothing
        self.session.open_path(path, series, slots, restore_planes=slots is None)
        add_recent(self.settings, path)
        self._rebuild_recent()

    def adopt_job(self, job) -> None:
        """Show a load started before the window existed (see app.run_viewer)."""
        self.session.adopt(job)
        add_recent(self.settings, job.path)
        self._rebuild_recent()

    def open_demo(self, slots=None) -> None:
        self.session.open_builtin(viewer.demo_volume, "demo study", slots)

    def open_payload(self, payload: dict, slots) -> None:
        if payload.get("demo"):
            self.open_demo(slots)
        else:
            self.message_bar.dismiss()
            self.session.open_path(payload["root"], payload.get("series"), slots)

    def _on_series_dropped(self, slot: int, payload: dict) -> None:
        self.open_payload(payload, [slot])

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        paths = recent_paths(self.settings)
        for path in paths:
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _c=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(paths))

    def dragEnterEvent(self, ev):  # noqa: N802
        if ev.mimeData().hasUrls() and any(u.isLocalFile() for u in ev.mimeData().urls()):
            ev.acceptProposedAction()

    def dropEvent(self, ev):  # noqa: N802
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            ev.acceptProposedAction()
            self.open_path(paths[0])

    # feedback
    def _on_save_failed(self, text: str) -> None:
        """A measurement save failed (``text``) or worked again (""): the message comes and goes with it."""
        if text:
            self.show_error(text)
        elif self.message_bar.text().startswith(SAVE_FAILED):
            self.message_bar.dismiss()
            self.statusBar().showMessage("The measurements are saved again.", 10000)

    def show_error(self, text: str) -> None:
        log.info("message shown: %s", text)
        self.message_bar.show_message(text)

    def _on_progress(self, label: str, done: int, total: int) -> None:
        busy = bool(self.session.jobs)
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if not busy:
            return
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"{label}  %v / %m" if total else label)

    def _on_series_opened(self, key: str) -> None:
        state = self.model.series[key]
        src = state.volume.source
        name = src.patient_name.replace("^", " ").strip()
        title = " - ".join(x for x in (name, src.series_description) if x)
        self.setWindowTitle(f"Hounsfield - {title}" if title else "Hounsfield")
        self._sync_actions()
        active = self.grid.views[self.model.active]
        if active.isVisible():
            active.setFocus()

    def _sync_actions(self) -> None:
        a, m = self.commands, self.model
        a[f"layout_{m.layout}"].setChecked(True)
        if f"tool_{m.tool}" in a:
            a[f"tool_{m.tool}"].setChecked(True)
        name = m.tools[m.tool].label  # the tool registry (viewer.core.tools)
        self.tool_label.setText(f"Left button: {name}   F1: shortcuts")
        a["crosshair"].setChecked(m.crosshair_visible)
        a["link"].setChecked(m.link_series)
        state = m.active_state
        a["invert"].setChecked(bool(state and state.invert))
        self.preset_menu.clear()
        if state is not None:
            for preset in presets_for(state.volume.modality):
                detail = "" if preset.auto else f"   W {preset.width:g}  L {preset.center:g}"
                act = self.preset_menu.addAction(f"{preset.key}   {preset.name}{detail}")
                act.triggered.connect(lambda _c=False, k=preset.key: self.cmd_preset(k))
            for act in self.colormap_group.actions():
                act.setChecked(act.text() == state.colormap)

    # commands (see actions.COMMANDS)
    def cmd_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a study folder")
        if path:
            self.open_path(path)

    def cmd_open_file(self) -> None:
        kinds = "Images (*.dcm DICOMDIR *.nii *.nii.gz *.nrrd *.mha *.mhd);;All files (*)"
        path, _ = QFileDialog.getOpenFileName(self, "Open a file", "", kinds)
        if path:
            self.open_path(path)

    def cmd_open_demo(self) -> None:
        self.open_demo()

    def cmd_cancel_load(self) -> None:
        self.session.cancel_all()

    def cmd_quit(self) -> None:
        self._user_quit = True  # the user asked: closing may ask about unexported work
        try:
            self.close()
        finally:
            self._user_quit = False

    def cmd_layout_1x1(self, _checked=True) -> None:
        self.model.set_layout("1x1")

    def cmd_layout_1x3(self, _checked=True) -> None:
        self.model.set_layout("1x3")

    def cmd_layout_2x2(self, _checked=True) -> None:
        self.model.set_layout("2x2")

    def cmd_maximise(self) -> None:
        self.model.toggle_maximise(self.model.active)

    def cmd_crosshair(self, checked: bool) -> None:
        self.model.set_crosshair_visible(checked)

    def cmd_link(self, checked: bool) -> None:
        self.model.set_link_series(checked)

    def cmd_reset(self) -> None:
        self.model.reset()

    def cmd_reset_oblique(self) -> None:
        if self.model.active_state is not None:
            self.model.active_state.reset_rotation()

    def _step(self, count: int) -> None:
        slot = self.model.active if self.model.active < 3 else 0
        self.model.step(slot, count)

    def cmd_next_slice(self) -> None:
        self._step(1)

    def cmd_previous_slice(self) -> None:
        self._step(-1)

    def cmd_next_page(self) -> None:
        self._step(10)

    def cmd_previous_page(self) -> None:
        self._step(-10)

    def cmd_default_window(self) -> None:
        state = self.model.active_state
        if state is not None:
            state.set_window(*state.home_window)

    def cmd_preset(self, key: str) -> None:
        state = self.model.active_state
        if state is None:
            return
        offered = presets_for(state.volume.modality)
        preset = next((p for p in offered if p.key == key), None)
        if preset is None:  # said, not silently ignored (an MR has one preset: '2' did nothing)
            keys = ", ".join(f"{p.key} {p.name}" for p in offered) or "none"
            self.statusBar().showMessage(f"No window preset on key {key} for {state.volume.modality or 'this series'}; "
                                         f"presets: {keys}; 0 restores the study's window.", 8000)
            return
        if preset.auto:
            center, width = auto_window(state.volume, state.loaded)
        else:
            center, width = preset.center, preset.width
        state.set_window(center, width, preset=preset.name)

    def cmd_invert(self, checked: bool) -> None:
        if self.model.active_state is not None:
            self.model.active_state.set_invert(checked)

    # thick slabs: the active 2D view, or all three while the 3D view is active
    def _slab_slots(self) -> list[int]:
        return [self.model.active] if self.model.active < 3 else [0, 1, 2]

    def _toggle_slab(self, mode: str) -> None:
        for slot in self._slab_slots():
            vp = self.model.viewports[slot]
            on = vp.slab_mm > 0 and vp.slab_mode == mode
            self.model.set_slab(slot, 0.0 if on else (vp.slab_mm or self.SLAB_DEFAULT_MM), mode)

    SLAB_DEFAULT_MM = 10.0

    def cmd_slab_mip(self) -> None:
        self._toggle_slab("mip")

    def cmd_slab_minip(self) -> None:
        self._toggle_slab("minip")

    def cmd_slab_thicker(self) -> None:
        for slot in self._slab_slots():
            vp = self.model.viewports[slot]
            self.model.set_slab(slot, min(vp.slab_mm * 1.5, 200.0) if vp.slab_mm else self.SLAB_DEFAULT_MM)

    def cmd_slab_thinner(self) -> None:
        for slot in self._slab_slots():
            vp = self.model.viewports[slot]
            self.model.set_slab(slot, vp.slab_mm / 1.5 if vp.slab_mm > 3.0 else 0.0)

    def cmd_colormap(self, name: str) -> None:
        if self.model.active_state is not None:
            self.model.active_state.set_colormap(name)

    def cmd_shortcuts(self) -> None:
        from viewer.ui.shortcuts import ShortcutSheet

        if self.sheet is None:
            self.sheet = ShortcutSheet(self)
        self.sheet.show()
        self.sheet.raise_()

    def cmd_about(self) -> None:
        QMessageBox.about(self, "About Hounsfield",
                          f"<b>Hounsfield {viewer.__version__}</b><br>A reading viewer for radiologists.<br>"
                          "Not for primary diagnosis unless validated at your site.")

    # settings
    def _restore_model_settings(self) -> None:
        s, m = self.settings, self.model
        layout = str(s.value("view/layout", "2x2"))
        m.layout = layout if layout in LAYOUTS else "2x2"
        tool = str(s.value("view/tool", "wl"))
        m.tool = tool if tool in m.tools else "wl"
        m.crosshair_visible = read_bool(s, "view/crosshair", True)
        m.link_series = read_bool(s, "view/link", True)

    def _restore_window_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 950)
            self.resizeDocks([self.browser_dock], [330], Qt.Orientation.Horizontal)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)

    def save_settings(self) -> None:
        s, m = self.settings, self.model
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("view/layout", m.layout)
        s.setValue("view/tool", m.tool)
        s.setValue("view/crosshair", m.crosshair_visible)
        s.setValue("view/link", m.link_series)
        s.sync()

    def showEvent(self, ev):  # noqa: N802
        super().showEvent(ev)
        if not getattr(self, "_index_read", False):
            self._index_read = True
            QTimer.singleShot(200, self.browser.refresh)

    def closeEvent(self, ev):  # noqa: N802
        # the user quits (Quit, Ctrl+Q, the close button): ask about segmentations never exported
        if (ev.spontaneous() or getattr(self, "_user_quit", False)) and not closing.confirm(self):
            ev.ignore()
            return
        self.save_settings()
        self.features.shutdown()  # the segments' journals are synced and closed: unexported work is offered again
        self.session.close_all()
        self.grid.dispose()
        super().closeEvent(ev)
