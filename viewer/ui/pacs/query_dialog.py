"""Query/Retrieve: search a PACS for studies, list a study's series, retrieve what is chosen.

The search form (patient name with * and ? wildcards, patient ID, accession number, date range,
modality) runs a study-level query on a worker thread; selecting a study lists its series in
the lower table (a series-level query, also off the UI thread).  Both tables sort on any column.
"Retrieve" fetches the selected series (or the whole study) by the node's method; the first
image series opens in the viewer as soon as it is complete.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from viewer.pacs import COLUMNS, Query
from viewer.ui.pacs.results import ResultsModel, ResultsProxy
from viewer.ui.pacs.workers import Task

MODALITIES = ("", "CT", "MR", "CR", "DX", "US", "PT", "NM", "MG", "XA", "RF", "SEG", "SR")
DATE_RANGES = (("Any date", None), ("Today", 0), ("Yesterday", 1), ("Last 7 days", 7), ("Last 30 days", 30),
               ("Last 12 months", 365), ("Custom range", -1))


def _table(model: ResultsModel) -> tuple[QTableView, ResultsProxy]:
    proxy = ResultsProxy()
    proxy.setSourceModel(model)
    view = QTableView()
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # server order until a heading is clicked
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.verticalHeader().hide()
    view.verticalHeader().setDefaultSectionSize(24)
    header = view.horizontalHeader()
    header.setHighlightSections(False)
    header.setStretchLastSection(True)
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    return view, proxy


class QueryDialog(QDialog):
    def __init__(self, ctl, parent=None):
        super().__init__(parent)
        self.ctl = ctl
        self.setWindowTitle("Query/Retrieve")
        self.setModal(False)
        self.resize(1100, 680)
        self._generation = 0  # a newer search makes older answers stale
        self._series_cache: dict[tuple[str, str], list] = {}
        self.query_task: Task | None = None
        self.series_task: Task | None = None
        self.last_query_ms = 0.0
        self._build()
        ctl.retrieve_progress.connect(self._on_progress)
        ctl.retrieve_ended.connect(self._on_retrieve_ended)
        ctl.settings_changed.connect(self.reload_nodes)

    # construction
    def _build(self) -> None:
        self.node_combo = QComboBox()
        self.node_combo.setMinimumWidth(260)
        self.node_combo.currentIndexChanged.connect(self._on_node_changed)
        self.node_label = QLabel("")
        self.node_label.setStyleSheet("color: palette(mid);")
        nodes_button = QPushButton("Nodes...")
        nodes_button.setAutoDefault(False)
        nodes_button.clicked.connect(self._edit_nodes)
        top = QHBoxLayout()
        top.addWidget(QLabel("PACS"))
        top.addWidget(self.node_combo)
        top.addWidget(self.node_label, 1)
        top.addWidget(nodes_button)

        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("DOE^J*   (* and ? match anything)")
        self.patient_id = QLineEdit()
        self.accession = QLineEdit()
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(list(MODALITIES))
        self.modality.setItemText(0, "")
        self.modality.lineEdit().setPlaceholderText("Any")
        self.date_range = QComboBox()
        for text, days in DATE_RANGES:
            self.date_range.addItem(text, days)
        self.date_from, self.date_to = QDateEdit(), QDateEdit()
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setDate(QDate.currentDate())
        self.date_from.setDate(QDate.currentDate().addDays(-7))
        self.date_range.currentIndexChanged.connect(self._on_range_changed)
        for edit in (self.patient_name, self.patient_id, self.accession):
            edit.returnPressed.connect(self.search)
        self.modality.lineEdit().returnPressed.connect(self.search)

        form = QGridLayout()
        form.setHorizontalSpacing(10)
        form.addWidget(QLabel("Patient name"), 0, 0)
        form.addWidget(self.patient_name, 0, 1)
        form.addWidget(QLabel("Patient ID"), 0, 2)
        form.addWidget(self.patient_id, 0, 3)
        form.addWidget(QLabel("Accession"), 0, 4)
        form.addWidget(self.accession, 0, 5)
        dates = QHBoxLayout()
        dates.setContentsMargins(0, 0, 0, 0)
        dates.addWidget(self.date_range)
        dates.addWidget(self.date_from)
        self.to_label = QLabel("to")
        dates.addWidget(self.to_label)
        dates.addWidget(self.date_to)
        dates.addStretch(1)
        form.addWidget(QLabel("Study date"), 1, 0)
        form.addLayout(dates, 1, 1, 1, 3)
        form.addWidget(QLabel("Modality"), 1, 4)
        form.addWidget(self.modality, 1, 5)
        form.setColumnStretch(1, 2)
        form.setColumnStretch(3, 1)
        form.setColumnStretch(5, 1)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        clear = QPushButton("Clear")
        clear.setAutoDefault(False)
        clear.clicked.connect(self.clear_form)
        buttons = QVBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addWidget(clear)
        form_row = QHBoxLayout()
        form_row.addLayout(form, 1)
        form_row.addSpacing(12)
        form_row.addLayout(buttons)

        self.studies = ResultsModel(COLUMNS["STUDY"], self)
        self.study_view, self.study_proxy = _table(self.studies)
        self.study_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.study_view.selectionModel().selectionChanged.connect(self._on_study_selected)
        self.study_view.doubleClicked.connect(lambda _i: self.retrieve())
        self.series = ResultsModel(COLUMNS["SERIES"], self)
        self.series_view, self.series_proxy = _table(self.series)
        self.series_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.series_view.selectionModel().selectionChanged.connect(lambda *_: self._sync_buttons())
        self.series_view.doubleClicked.connect(lambda _i: self.retrieve())
        self.study_count = QLabel("Studies")
        self.series_count = QLabel("Series of the selected study")
        for label in (self.study_count, self.series_count):
            label.setStyleSheet("font-weight: 600;")
        split = QSplitter(Qt.Orientation.Vertical)
        for label, view in ((self.study_count, self.study_view), (self.series_count, self.series_view)):
            box = QWidget()
            lay = QVBoxLayout(box)
            lay.setContentsMargins(0, 6, 0, 0)
            lay.addWidget(label)
            lay.addWidget(view)
            split.addWidget(box)
        split.setSizes([400, 200])

        self.status = QLabel("Enter search terms and press Search.")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the retrieval; what arrived is kept and a later retrieve resumes")
        self.cancel_button.clicked.connect(self.ctl.cancel_transfers)
        self.cancel_button.hide()
        self.open_check = QCheckBox("Open when ready")
        self.open_check.setChecked(True)
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.setAutoDefault(False)
        self.retrieve_button.setToolTip("Retrieve the selected series, or the whole selected study (double-click)")
        self.retrieve_button.clicked.connect(self.retrieve)
        close = QPushButton("Close")
        close.setAutoDefault(False)
        close.clicked.connect(self.close)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.progress)
        bottom.addWidget(self.cancel_button)
        bottom.addSpacing(12)
        bottom.addWidget(self.open_check)
        bottom.addWidget(self.retrieve_button)
        bottom.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(form_row)
        layout.addWidget(split, 1)
        layout.addLayout(bottom)
        self._on_range_changed()
        self._sync_buttons()
        self.patient_name.setFocus()

    # nodes
    def reload_nodes(self) -> None:
        settings = self.ctl.load_settings()
        current = self.node_combo.currentText()
        self.node_combo.blockSignals(True)
        self.node_combo.clear()
        for node in settings.nodes:
            self.node_combo.addItem(node.name)
        i = self.node_combo.findText(current)
        self.node_combo.setCurrentIndex(i if i >= 0 else 0)
        self.node_combo.blockSignals(False)
        self._on_node_changed()
        if not settings.nodes:
            self.set_status("No PACS node is configured yet; add one with Nodes...")

    def node(self):
        name = self.node_combo.currentText()
        if not name or self.ctl.settings is None:
            return None
        try:
            return self.ctl.settings.node(name)
        except Exception:  # noqa: BLE001 - removed meanwhile
            return None

    def _on_node_changed(self, *_args) -> None:
        node = self.node()
        if node is None:
            self.node_label.setText("")
        else:
            how = "DICOMweb" if node.is_dicomweb else "DIMSE" + (" + TLS" if node.tls.enabled else "")
            self.node_label.setText(f"{node.describe()}   {how}, retrieves by {node.retrieve_method}")
        self._sync_buttons()

    def _edit_nodes(self) -> None:
        from viewer.ui.pacs import open_nodes

        open_nodes(self.ctl.window)
        self.reload_nodes()

    # form
    def _on_range_changed(self, *_args) -> None:
        custom = self.date_range.currentData() == -1
        for w in (self.date_from, self.to_label, self.date_to):
            w.setVisible(custom)

    def clear_form(self) -> None:
        for edit in (self.patient_name, self.patient_id, self.accession):
            edit.clear()
        self.modality.setCurrentIndex(0)
        self.modality.setEditText("")
        self.date_range.setCurrentIndex(0)

    def set_form(self, **values) -> None:
        """Fill the form (for tests and scripting): patient_name, patient_id, accession, modality."""
        for key, value in values.items():
            if key == "modality":
                self.modality.setEditText(value)
            else:
                getattr(self, key).setText(value)

    def query(self) -> Query:
        days = self.date_range.currentData()
        today = QDate.currentDate()
        if days is None:
            d0 = d1 = ""
        elif days == -1:
            d0, d1 = self.date_from.date().toString("yyyyMMdd"), self.date_to.date().toString("yyyyMMdd")
        else:
            d0 = today.addDays(-days).toString("yyyyMMdd")
            d1 = today.addDays(-1 if days == 1 else 0).toString("yyyyMMdd")
        return Query("STUDY", self.patient_name.text(), self.patient_id.text(), d0, d1,
                     self.modality.currentText(), self.accession.text())

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e0a050;" if error else "")

    def _fail(self, text: str) -> None:
        self.set_status(text, error=True)
        self.ctl.error(text)

    # searching (worker threads; a newer search makes the older answer stale)
    def search(self) -> None:
        node = self.node()
        if node is None:
            self._fail("No PACS node is chosen; add one with Nodes... first.")
            return
        try:
            q = self.query().normalized()
        except Exception as exc:  # noqa: BLE001 - a bad date: one sentence
            from viewer.ui.pacs.workers import sentence

            self._fail(sentence(exc, "query"))
            return
        self._generation += 1
        gen, local, t0 = self._generation, self.ctl.settings.local, time.perf_counter()

        def work(_task):
            from viewer.pacs import query

            return query(node, q, local)

        task = Task(work, "query", self)
        task.done.connect(lambda results: self._on_studies(gen, results, t0))
        task.failed.connect(lambda text: self._on_query_failed(gen, text))
        self.query_task = task
        self.search_button.setEnabled(False)
        self.set_status(f"Searching {node.name}...")
        task.start()

    def _on_query_failed(self, gen: int, text: str) -> None:
        if gen != self._generation:
            return
        self.query_task = None
        self.search_button.setEnabled(True)
        self._fail(text)

    def _on_studies(self, gen: int, results: list, t0: float) -> None:
        if gen != self._generation:
            return
        self.query_task = None
        self.last_query_ms = (time.perf_counter() - t0) * 1000
        self.search_button.setEnabled(True)
        self.studies.set_results(results)
        self.series.set_results([])
        self._series_cache.clear()
        self.study_view.resizeColumnsToContents()
        n = len(results)
        self.study_count.setText(f"Studies ({n})")
        self.series_count.setText("Series of the selected study")
        self.set_status(f"{n} {'study' if n == 1 else 'studies'} found ({self.last_query_ms:.0f} ms)."
                        if n else "No study matches; widen the search (use * in names, clear the dates).")
        if n == 1:
            self.study_view.selectRow(0)
        self._sync_buttons()

    def selected_study(self):
        rows = self.study_view.selectionModel().selectedRows()
        return self.study_proxy.result_at(rows[0].row()) if rows else None

    def selected_series(self) -> list:
        return [self.series_proxy.result_at(i.row()) for i in self.series_view.selectionModel().selectedRows()]

    def _on_study_selected(self, *_args) -> None:
        study = self.selected_study()
        self.series.set_results([])
        self._sync_buttons()
        node = self.node()
        if study is None or node is None:
            return
        key = (node.name, study.study_uid)
        if key in self._series_cache:
            self._show_series(self._series_cache[key])
            return
        self.series_count.setText("Series of the selected study (loading...)")
        gen, local = self._generation, self.ctl.settings.local
        q = Query("SERIES", study_uid=study.study_uid)

        def work(_task):
            from viewer.pacs import query

            return query(node, q, local)

        task = Task(work, "series query", self)
        task.done.connect(lambda results: self._on_series(gen, key, results))
        task.failed.connect(lambda text: self._on_query_failed(gen, text))
        self.series_task = task
        task.start()

    def _on_series(self, gen: int, key, results: list) -> None:
        self.series_task = None
        self._series_cache[key] = results
        study = self.selected_study()
        if gen == self._generation and study is not None and study.study_uid == key[1]:
            self._show_series(results)

    def _show_series(self, results: list) -> None:
        self.series.set_results(results)
        self.series_view.resizeColumnsToContents()
        self.series_count.setText(f"Series of the selected study ({len(results)})")
        self._sync_buttons()

    # retrieving
    def retrieve(self):
        study, node = self.selected_study(), self.node()
        if study is None or node is None:
            self.set_status("Select a study (or some of its series) to retrieve.", error=True)
            return None
        series = [s.series_uid for s in self.selected_series()]
        task = self.ctl.retrieve(node, study.study_uid, series or None, open_first=self.open_check.isChecked())
        if task is not None:
            what = f"{len(series)} series" if series else "the study"
            self.set_status(f"Retrieving {what} from {node.name} by {node.retrieve_method}...")
            self.progress.setRange(0, 0)
            self.progress.show()
            self.cancel_button.show()
        self._sync_buttons()
        return task

    def _on_progress(self, p) -> None:
        self.progress.show()
        self.cancel_button.show()
        self.progress.setRange(0, max(p.total, 0))
        self.progress.setValue(p.done)
        self.progress.setFormat("%v / %m images")

    def _on_retrieve_ended(self, text: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        if text:
            self.set_status(text, error=True)
        else:
            self.set_status("Retrieved; the study is in the study list" +
                            (" and open in the viewer." if self.ctl.opened_first else "."))
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        busy = self.ctl.retrieve_task is not None
        self.retrieve_button.setEnabled(not busy and self.selected_study() is not None)
        n = len(self.selected_series())
        self.retrieve_button.setText(f"Retrieve {n} series" if n else "Retrieve study")
