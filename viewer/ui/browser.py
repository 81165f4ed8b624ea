"""The study browser: patients, studies and series (with thumbnails) from the local study index.

Every folder ever opened is in the index (most recent first), so the browser doubles as the
list of recent studies.  Double-click a series to open it; drag it onto a view to show it there.
The built-in demo study is always listed.
"""

from __future__ import annotations

import json
import threading

from PySide6.QtCore import QMimeData, QObject, QSize, Qt, Signal
from PySide6.QtGui import QFont, QIcon, QPixmap
from PySide6.QtWidgets import QHeaderView, QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from viewer.logs import log
from viewer.ui.annotations import dicom_date, person_name
from viewer.ui.sliceview import SERIES_MIME
from viewer.ui.thumbnails import SIZE, ThumbnailLoader

DEMO = {"demo": True}
ROLE = Qt.ItemDataRole.UserRole


def read_index() -> list[tuple[str, list]]:
    """(root, patients) for every folder in the study index, most recently scanned first."""
    from viewer.core.dicom.index import StudyIndex
    from viewer.core.dicom.series import group_headers

    index = StudyIndex()
    try:
        out = []
        for root, _when in index.folders():
            headers = list(index.headers_under(root).values())
            if headers:
                out.append((root, group_headers(headers)))
        return out
    finally:
        index.close()


class _IndexReader(QObject):
    done = Signal(object)

    def start(self) -> None:
        threading.Thread(target=self._run, name="hounsfield-index", daemon=True).start()

    def _run(self) -> None:
        try:
            entries = read_index()
        except Exception:
            log.exception("reading the study index failed")
            entries = []
        try:
            self.done.emit(entries)
        except RuntimeError:  # the window closed meanwhile
            pass


class SeriesTree(QTreeWidget):
    """A tree whose series rows can be dragged onto views."""

    def mimeTypes(self):  # noqa: N802
        return [SERIES_MIME]

    def mimeData(self, items):  # noqa: N802
        payload = next((it.data(0, ROLE) for it in items if it.data(0, ROLE)), None)
        mime = QMimeData()
        if payload:
            mime.setData(SERIES_MIME, json.dumps(payload).encode("utf-8"))
        return mime


class StudyBrowser(QWidget):
    open_requested = Signal(dict)  # {"root": folder, "series": id} or {"demo": True}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: patient, description, modality")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        self.tree = SeriesTree()
        self.tree.setHeaderLabels(["Patient / study / series", "Mod.", "Images"])
        self.tree.setIconSize(QSize(SIZE, SIZE))
        self.tree.setDragEnabled(True)
        self.tree.setUniformRowHeights(False)
        self.tree.setAlternatingRowColors(False)
        self.tree.setIndentation(14)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree)
        self.thumbnails = ThumbnailLoader(self)
        self.thumbnails.ready.connect(self._on_thumbnail)
        self._series_items: dict[str, QTreeWidgetItem] = {}
        self._icons: dict[str, QIcon] = {}
        self._reader: _IndexReader | None = None
        self.entries: list[tuple[str, list]] = []
        self.populate([])

    # filling
    def refresh(self) -> None:
        """Re-read the study index in the background and show it."""
        self._reader = _IndexReader(self)
        self._reader.done.connect(self.populate)
        self._reader.start()

    def add_scan(self, result) -> None:
        """Show a folder that was just scanned (first in the list)."""
        if result is None:
            return
        self.entries = [(r, p) for r, p in self.entries if r != result.root]
        self.populate([(result.root, result.patients), *self.entries])

    def populate(self, entries) -> None:
        self.entries = list(entries)
        self.tree.clear()
        self._series_items.clear()
        bold = QFont()
        bold.setBold(True)
        patients: dict[tuple, QTreeWidgetItem] = {}
        studies: dict[str, QTreeWidgetItem] = {}
        demo = QTreeWidgetItem(self.tree, ["Demo, Phantom (built-in)", "", ""])
        demo.setFont(0, bold)
        demo_series = QTreeWidgetItem(demo, ["Chest CT phantom\n256 x 256", "CT", "120"])
        demo_series.setData(0, ROLE, DEMO)
        demo_series.setToolTip(0, "A generated chest CT with lung nodules; double-click to open")
        for root, plist in self.entries:
            for p in plist:
                pkey = (p.id, p.name)
                pitem = patients.get(pkey)
                if pitem is None:
                    label = person_name(p.name) + (f"  ({p.id})" if p.id else "")
                    pitem = patients[pkey] = QTreeWidgetItem(self.tree, [label, "", ""])
                    pitem.setFont(0, bold)
                for st in p.studies:
                    sitem = studies.get(st.uid)
                    if sitem is None:
                        title = "  ".join(x for x in (dicom_date(st.date), st.description) if x) or "Study"
                        sitem = studies[st.uid] = QTreeWidgetItem(pitem, [title, "", ""])
                        sitem.setToolTip(0, root)
                    for s in st.series:
                        self._add_series(sitem, root, s)
        self.tree.expandAll()
        self._apply_filter(self.filter.text())

    def _add_series(self, parent: QTreeWidgetItem, root: str, s) -> None:
        if s.id in self._series_items:
            return
        title = s.description or (f"Series {s.number}" if s.number is not None else "Series")
        if not s.is_image:
            title = s.description or s.sop_class_name
        detail = f"Se {s.number}" if s.number is not None and s.description else ""
        if s.is_image:
            detail += f"{'  ' if detail else ''}{s.size[0]} x {s.size[1]}"
        count = str(len(s.frames)) if s.is_image else str(len(s.objects))
        item = QTreeWidgetItem(parent, [f"{title}\n{detail}" if detail else title, s.modality, count])
        size = f"{s.size[0]} x {s.size[1]} x {s.size[2]}"
        item.setToolTip(0, f"{title}\n{size}\n{root}" if s.is_image else title)
        if s.is_image:
            item.setData(0, ROLE, {"root": root, "series": s.id})
            item.setSizeHint(0, QSize(SIZE + 8, SIZE + 6))
            self._series_items[s.id] = item
            if s.id in self._icons:
                item.setIcon(0, self._icons[s.id])
            else:
                self.thumbnails.request(s)
        elif s.modality in ("SEG", "SR", "RTSTRUCT") and s.objects:  # opens with the images it refers to
            item.setData(0, ROLE, {"root": s.objects[0].path})
            item.setToolTip(0, f"{title}\nDouble-click to open it with its images")
        else:
            item.setDisabled(True)

    def _on_thumbnail(self, series_id: str, image) -> None:
        if image.isNull():
            return
        self._icons[series_id] = QIcon(QPixmap.fromImage(image))
        item = self._series_items.get(series_id)
        if item is not None:
            item.setIcon(0, self._icons[series_id])

    def _on_double_click(self, item: QTreeWidgetItem, _col: int) -> None:
        payload = item.data(0, ROLE)
        if payload:
            self.open_requested.emit(dict(payload))

    def _apply_filter(self, text: str) -> None:
        words = text.lower().split()
        for i in range(self.tree.topLevelItemCount()):
            pitem = self.tree.topLevelItem(i)
            any_visible = False
            for j in range(pitem.childCount()):
                sitem = pitem.child(j)
                study_visible = False
                for k in range(sitem.childCount()):
                    leaf = sitem.child(k)
                    hay = " ".join(x.text(0) + " " + x.text(1) for x in (pitem, sitem, leaf)).lower()
                    visible = all(w in hay for w in words)
                    leaf.setHidden(not visible)
                    study_visible |= visible
                if sitem.childCount() == 0:
                    hay = (pitem.text(0) + " " + sitem.text(0) + " " + sitem.text(1)).lower()
                    study_visible = all(w in hay for w in words)
                sitem.setHidden(not study_visible)
                any_visible |= study_visible
            pitem.setHidden(not any_visible)

    def series_item(self, series_id: str) -> QTreeWidgetItem | None:
        return self._series_items.get(series_id)
