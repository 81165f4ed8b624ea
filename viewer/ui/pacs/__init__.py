"""PACS in the main window: a "PACS" menu (Query/Retrieve, Nodes, Send), our Storage SCP while
the app runs, and transfer progress in the status bar.

    from viewer.ui import pacs as pacs_ui
    pacs_ui.install(window)        # in MainWindow.__init__, after the menus are built
    pacs_ui.shutdown(window)       # in MainWindow.closeEvent

Start-up stays fast: this package imports only Qt here; viewer.pacs (pydicom, pynetdicom,
requests) is loaded on a worker thread a moment after start-up, or when a dialog first opens.
"""

from __future__ import annotations

from PySide6.QtGui import QAction

from viewer.ui.pacs.controller import PacsController

__all__ = ["PacsController", "controller", "install", "open_nodes", "open_query", "send_dialog", "shutdown"]


def install(window, start_delay_ms: int | None = None) -> PacsController:
    """Add the PACS menu to ``window`` and start the Storage SCP shortly (when PACS is configured)."""
    ctl = PacsController(window)
    window.pacs = ctl
    menu = window.menuBar().addMenu("&PACS")
    help_menu = next((a for a in window.menuBar().actions() if a.text() == "&Help"), None)
    if help_menu is not None:  # keep Help last
        window.menuBar().insertMenu(help_menu, menu)
    items = (("&Query/Retrieve...", "Ctrl+Shift+Q", "Find studies on a PACS and retrieve them", open_query),
             ("&Nodes...", "", "Configure the PACS nodes and our own AE title", open_nodes),
             ("&Send to PACS...", "", "Send DICOM files (SEG, SR, any DICOM) to a PACS", send_dialog))
    ctl.actions = {}
    for text, shortcut, tip, command in items:
        act = QAction(text, window)
        if shortcut:
            act.setShortcut(shortcut)
        act.setStatusTip(tip)
        act.triggered.connect(lambda _c=False, f=command: f(window))
        menu.addAction(act)
        ctl.actions[command.__name__] = act
    window.pacs_menu = menu
    if start_delay_ms is None:
        ctl.start_background()
    else:
        ctl.start_background(start_delay_ms)
    return ctl


def controller(window) -> PacsController:
    return window.pacs


def shutdown(window) -> None:
    ctl = getattr(window, "pacs", None)
    if ctl is not None:
        ctl.shutdown()


def open_query(window):
    """Show the (single, non-modal) Query/Retrieve dialog."""
    from viewer.ui.pacs.query_dialog import QueryDialog

    ctl = window.pacs
    if getattr(ctl, "query_dialog", None) is None:
        ctl.query_dialog = QueryDialog(ctl, window)
    dialog = ctl.query_dialog
    dialog.reload_nodes()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def open_nodes(window, modal: bool = True):
    """The PACS nodes dialog; saving it reloads the settings and restarts the SCP if our port changed."""
    from viewer.ui.pacs.nodes_dialog import NodesDialog

    dialog = NodesDialog(window.pacs, window)
    if modal:
        dialog.exec()
    else:
        dialog.show()
    return dialog


def send_dialog(window):
    """Choose DICOM files and a node, then send them."""
    from PySide6.QtWidgets import QFileDialog, QInputDialog

    ctl = window.pacs
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
