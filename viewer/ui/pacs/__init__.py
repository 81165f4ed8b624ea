"""PACS in the main window: a "PACS" menu (Query/Retrieve, Nodes, Send), our Storage SCP while
the app runs, and transfer progress in the status bar.

``PacsFeature`` is what the main window installs (``window.features.pacs``); the dialogs are opened
with ``open_query(window)``, ``open_nodes(window)`` and ``send_dialog(window)``.

Start-up stays fast: this package imports only Qt here; viewer.pacs (pydicom, pynetdicom,
requests) is loaded on a worker thread a moment after start-up, or when a dialog first opens.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QToolButton

from viewer.ui.actions import Command
from viewer.ui.feature import Feature
from viewer.ui.pacs.controller import PacsController

__all__ = ["PacsController", "PacsFeature", "open_nodes", "open_query", "send_dialog"]


class PacsFeature(Feature):
    name = "pacs"

    def __init__(self, window, workspace, start_delay_ms: int | None = None):
        """The PACS menu; the Storage SCP starts shortly (when PACS is configured)."""
        super().__init__(window, workspace)
        ctl = self.controller = PacsController(window)
        self.query_dialog = None  # the one, non-modal Query/Retrieve dialog
        menu = self.menu = self.add_menu("&PACS")
        self.actions = {}
        for name, text, keys, tip, command in (
                ("query", "&Query/Retrieve...", ("Ctrl+Shift+Q",), "Find studies on a PACS and retrieve them",
                 open_query),
                ("nodes", "&Nodes...", (), "Configure the PACS nodes and our own AE title", open_nodes),
                ("send", "&Send to PACS...", (), "Send DICOM files (SEG, SR, any DICOM) to a PACS", send_dialog)):
            act = self.actions[name] = self.commands.add(Command(f"pacs_{name}", text, "PACS", keys, tip=tip),
                                                         lambda f=command: f(window))
            menu.addAction(act)
        # transfer progress in the status bar: "Retrieving series 2 (CT) 40 / 141 [Cancel]"
        bar = window.statusBar()
        self.status_label = QLabel("")
        self.status_progress = QProgressBar()
        self.status_progress.setFixedWidth(200)
        self.status_cancel = QToolButton()
        self.status_cancel.setText("Cancel")
        self.status_cancel.setToolTip("Stop the PACS transfer; what arrived is kept and a later retrieve resumes")
        self.status_cancel.clicked.connect(ctl.cancel_transfers)
        for w in self._status_widgets():
            bar.addPermanentWidget(w)
            w.hide()
        ctl.transfer_status.connect(self._show_status)
        ctl.transfer_idle.connect(lambda: [w.hide() for w in self._status_widgets()])
        if start_delay_ms is None:
            ctl.start_background()
        else:
            ctl.start_background(start_delay_ms)

    def _status_widgets(self):
        return (self.status_label, self.status_progress, self.status_cancel)

    def _show_status(self, text: str, done: int, total: int) -> None:
        for w in self._status_widgets():
            w.show()
        self.status_label.setText(text)
        self.status_progress.setRange(0, max(total, 0))
        self.status_progress.setValue(min(done, total) if total else 0)

    def shutdown(self) -> None:
        self.controller.shutdown()


def open_query(window):
    """Show the (single, non-modal) Query/Retrieve dialog."""
    from viewer.ui.pacs.query_dialog import QueryDialog

    feature = window.features.pacs
    if feature.query_dialog is None:
        feature.query_dialog = QueryDialog(feature.controller, window)
    dialog = feature.query_dialog
    dialog.reload_nodes()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def open_nodes(window, modal: bool = True):
    """The PACS nodes dialog; saving it reloads the settings and restarts the SCP if our port changed."""
    from viewer.ui.pacs.nodes_dialog import NodesDialog

    dialog = NodesDialog(window.features.pacs.controller, window)
    if modal:
        dialog.exec()
    else:
        dialog.show()
    return dialog


def send_dialog(window):
    """Choose DICOM files and a node, then send them."""
    from PySide6.QtWidgets import QFileDialog, QInputDialog

    ctl = window.features.pacs.controller
    settings = ctl.load_settings()
    if not settings.nodes:
        window.show_error("No PACS node is configured; add one with PACS > Nodes first.")
        return None
    paths, _ = QFileDialog.getOpenFileNames(window, "Send DICOM files to a PACS", "",
                                            "DICOM files (*.dcm);;All files (*)")
    if not paths:
        return None
    names = [n.name for n in settings.nodes]
    name = names[0]
    if len(names) > 1:
        name, ok = QInputDialog.getItem(window, "Send to PACS", f"Send {len(paths)} files to:", names, 0, False)
        if not ok:
            return None
    return ctl.send_files(paths, name)
