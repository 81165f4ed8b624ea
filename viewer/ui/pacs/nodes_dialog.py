"""PACS nodes: add, edit and remove them, set our own AE title and storage port, test a connection.

A DIMSE node has an AE title, host, port, retrieve method (C-GET or C-MOVE) and optional TLS; a
DICOMweb node a base URL with optional basic or bearer authentication.  Saving writes the
settings file of ``viewer.pacs`` (readable by its owner only: it may hold passwords).  "Test
connection" runs a C-ECHO (or a one-result QIDO-RS search) on a worker thread and shows one
sentence.
"""

from __future__ import annotations

import copy

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from viewer.pacs import LocalAE, PacsNode, PacsSettings, TlsSettings
from viewer.ui.pacs.workers import Task, sentence

AUTH = (("None", "none"), ("Basic (user name and password)", "basic"), ("Bearer token", "bearer"))


def _port_box(value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(1, 65535)
    box.setValue(value)
    return box


class NodesDialog(QDialog):
    def __init__(self, ctl, parent=None):
        super().__init__(parent)
        self.ctl = ctl
        self.setWindowTitle("PACS nodes")
        self.resize(760, 520)
        settings = ctl.load_settings()
        self.path = settings.path
        self.local = copy.deepcopy(settings.local)
        self.nodes: list[PacsNode] = [copy.deepcopy(n) for n in settings.nodes]
        self._current = -1
        self._loading = False
        self.echo_task: Task | None = None
        self._build()
        for n in self.nodes:
            self.node_list.addItem(n.name)
        if self.nodes:
            self.node_list.setCurrentRow(0)
        self._sync_enabled()

    # construction
    def _build(self) -> None:
        self.node_list = QListWidget()
        self.node_list.setMinimumWidth(170)
        self.node_list.currentRowChanged.connect(self._on_row_changed)
        add, remove = QPushButton("Add"), QPushButton("Remove")
        add.clicked.connect(self.add_node)
        remove.clicked.connect(self.remove_node)
        self.remove_button = remove
        left = QVBoxLayout()
        left.addWidget(QLabel("Nodes"))
        left.addWidget(self.node_list, 1)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        left.addLayout(row)

        self.name = QLineEdit()
        self.protocol = QComboBox()
        self.protocol.addItem("DIMSE (C-FIND, C-GET / C-MOVE, C-STORE)", "dimse")
        self.protocol.addItem("DICOMweb (QIDO-RS, WADO-RS, STOW-RS)", "dicomweb")
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1, 3600)
        self.timeout.setSuffix(" s")
        self.timeout.setDecimals(0)
        common = QFormLayout()
        common.addRow("Name", self.name)
        common.addRow("Protocol", self.protocol)
        common.addRow("Time-out", self.timeout)

        # DIMSE page
        self.ae_title = QLineEdit()
        self.ae_title.setMaxLength(16)
        self.host = QLineEdit()
        self.host.setPlaceholderText("pacs.hospital.org or 10.0.0.5")
        self.port = _port_box(104)
        self.method = QComboBox()
        self.method.addItem("C-GET (the PACS sends on the same connection)", "C-GET")
        self.method.addItem("C-MOVE (the PACS sends to our storage port)", "C-MOVE")
        self.tls = QCheckBox("Use TLS")
        self.ca_file, self.cert_file, self.key_file = QLineEdit(), QLineEdit(), QLineEdit()
        self.ca_file.setPlaceholderText("system certificates")
        self.cert_file.setPlaceholderText("none")
        self.key_file.setPlaceholderText("none")
        self.verify = QCheckBox("Verify the server's certificate")
        self.tls.toggled.connect(lambda _c: self._sync_enabled())
        dimse = QFormLayout()
        dimse.addRow("AE title", self.ae_title)
        dimse.addRow("Host", self.host)
        dimse.addRow("Port", self.port)
        dimse.addRow("Retrieve by", self.method)
        dimse.addRow("", self.tls)
        dimse.addRow("CA certificates", self.ca_file)
        dimse.addRow("Client certificate", self.cert_file)
        dimse.addRow("Client key", self.key_file)
        dimse.addRow("", self.verify)
        dimse.setContentsMargins(0, 0, 0, 0)
        dimse_page = QWidget()
        dimse_page.setLayout(dimse)

        # DICOMweb page
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://pacs.hospital.org/dicom-web")
        self.auth = QComboBox()
        for text, value in AUTH:
            self.auth.addItem(text, value)
        self.username, self.password, self.token = QLineEdit(), QLineEdit(), QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.auth.currentIndexChanged.connect(lambda _i: self._sync_enabled())
        web = QFormLayout()
        web.addRow("Base URL", self.url)
        web.addRow("Authentication", self.auth)
        web.addRow("User name", self.username)
        web.addRow("Password", self.password)
        web.addRow("Token", self.token)
        web.setContentsMargins(0, 0, 0, 0)
        web_page = QWidget()
        web_page.setLayout(web)

        self.pages = QStackedWidget()
        self.pages.addWidget(dimse_page)
        self.pages.addWidget(web_page)
        self.protocol.currentIndexChanged.connect(self.pages.setCurrentIndex)
        self.protocol.currentIndexChanged.connect(lambda _i: self._sync_enabled())

        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.test_result = QLabel("")
        self.test_result.setWordWrap(True)
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.test_result, 1)

        self.node_box = QGroupBox("Node")
        node_layout = QVBoxLayout(self.node_box)
        node_layout.addLayout(common)
        node_layout.addWidget(self.pages)
        node_layout.addLayout(test_row)
        node_layout.addStretch(1)

        self.local_ae = QLineEdit(self.local.ae_title)
        self.local_ae.setMaxLength(16)
        self.local_port = _port_box(self.local.storage_port)
        local_box = QGroupBox("This computer")
        local_form = QFormLayout(local_box)
        local_form.addRow("Our AE title", self.local_ae)
        local_form.addRow("Storage port", self.local_port)
        local_form.addRow("", QLabel("PACS nodes send C-MOVE results and pushed studies here."))

        right = QVBoxLayout()
        right.addWidget(self.node_box, 1)
        right.addWidget(local_box)
        body = QHBoxLayout()
        body.addLayout(left)
        body.addLayout(right, 1)

        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #e0a050;")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

    # the form <-> the node being edited
    def _show_node(self, node: PacsNode) -> None:
        self._loading = True
        self.name.setText(node.name)
        self.protocol.setCurrentIndex(1 if node.is_dicomweb else 0)
        self.timeout.setValue(node.timeout)
        self.ae_title.setText(node.ae_title)
        self.host.setText(node.host)
        self.port.setValue(node.port)
        self.method.setCurrentIndex(max(0, self.method.findData(node.retrieve_method)))
        self.tls.setChecked(node.tls.enabled)
        self.ca_file.setText(node.tls.ca_file)
        self.cert_file.setText(node.tls.cert_file)
        self.key_file.setText(node.tls.key_file)
        self.verify.setChecked(node.tls.verify)
        self.url.setText(node.url)
        self.auth.setCurrentIndex(max(0, self.auth.findData(node.auth)))
        self.username.setText(node.username)
        self.password.setText(node.password)
        self.token.setText(node.token)
        self.test_result.setText("")
        self._loading = False
        self._sync_enabled()

    def form_node(self) -> PacsNode:
        """The node as the form shows it (not validated)."""
        web = self.protocol.currentData() == "dicomweb"
        return PacsNode(self.name.text().strip(), "dicomweb" if web else "dimse",
                        ae_title=self.ae_title.text().strip(), host=self.host.text().strip(), port=self.port.value(),
                        retrieve_method="WADO-RS" if web else self.method.currentData(),
                        tls=TlsSettings(self.tls.isChecked(), self.ca_file.text().strip(),
                                        self.cert_file.text().strip(), self.key_file.text().strip(),
                                        self.verify.isChecked()),
                        url=self.url.text().strip(), auth=self.auth.currentData() if web else "none",
                        username=self.username.text(), password=self.password.text(), token=self.token.text(),
                        timeout=float(self.timeout.value()))

    def form_local(self) -> LocalAE:
        return LocalAE(self.local_ae.text().strip(), self.local_port.value())

    def _store_form(self) -> None:
        if 0 <= self._current < len(self.nodes):
            self.nodes[self._current] = self.form_node()
            item = self.node_list.item(self._current)
            if item is not None and self.nodes[self._current].name:
                item.setText(self.nodes[self._current].name)

    def _on_row_changed(self, row: int) -> None:
        if self._loading:
            return
        self._store_form()
        self._current = row
        if 0 <= row < len(self.nodes):
            self._show_node(self.nodes[row])
        self._sync_enabled()

    def _sync_enabled(self) -> None:
        has = 0 <= self._current < len(self.nodes)
        self.node_box.setEnabled(has)
        self.remove_button.setEnabled(has)
        tls = self.tls.isChecked()
        for w in (self.ca_file, self.cert_file, self.key_file, self.verify):
            w.setEnabled(tls)
        auth = self.auth.currentData()
        self.username.setEnabled(auth == "basic")
        self.password.setEnabled(auth == "basic")
        self.token.setEnabled(auth == "bearer")

    # commands
    def add_node(self, protocol: str = "dimse") -> None:
        self._store_form()
        names = {n.name for n in self.nodes}
        name = next(f"pacs-{i}" if i else "pacs" for i in range(len(names) + 1)
                    if (f"pacs-{i}" if i else "pacs") not in names)
        self.nodes.append(PacsNode(name, protocol if protocol in ("dimse", "dicomweb") else "dimse"))
        self._loading = True
        self.node_list.addItem(name)
        self._loading = False
        self.node_list.setCurrentRow(len(self.nodes) - 1)
        self.name.setFocus()
        self.name.selectAll()

    def remove_node(self) -> None:
        row = self._current
        if not 0 <= row < len(self.nodes):
            return
        del self.nodes[row]
        self._current = -1
        self._loading = True
        self.node_list.takeItem(row)
        self._loading = False
        if self.nodes:
            self._current = min(row, len(self.nodes) - 1)
            self.node_list.setCurrentRow(self._current)
            self._show_node(self.nodes[self._current])
        self._sync_enabled()

    def test_connection(self):
        """C-ECHO (or a QIDO-RS ping) with the node as the form shows it, on a worker thread."""
        node, local = self.form_node(), self.form_local()
        try:
            node.validate()
            local.validate()
        except Exception as exc:  # noqa: BLE001
            self.test_result.setText(sentence(exc, "connection test"))
            return None

        def work(_task):
            from viewer.pacs import echo

            return echo(node, local)

        task = Task(work, "connection test", self)
        task.done.connect(lambda ms: self._on_tested(task, f"The connection to '{node.name}' works ({ms:.0f} ms)."))
        task.failed.connect(lambda text: self._on_tested(task, text))
        self.echo_task = task
        self.test_button.setEnabled(False)
        self.test_result.setText(f"Testing {node.describe()}...")
        return task.start()

    def _on_tested(self, task: Task, text: str) -> None:
        if task is not self.echo_task:
            return
        self.echo_task = None
        self.test_button.setEnabled(True)
        self.test_result.setText(text)

    def save(self) -> bool:
        """Validate and write the settings; on a problem show one sentence and stay open."""
        self._store_form()
        settings = PacsSettings(self.form_local(), [], self.path)
        try:
            names = set()
            for node in self.nodes:
                if node.name in names:
                    raise ValueError(f"Two nodes are named '{node.name}'; give each node its own name.")
                names.add(node.name)
                settings.add(node)
            settings.save()
        except Exception as exc:  # noqa: BLE001 - shown as one sentence
            text = str(exc) if isinstance(exc, ValueError) else sentence(exc, "saving of the PACS settings")
            self.error_label.setText(text)
            return False
        self.ctl.settings = settings
        self.ctl.settings_changed.emit()
        self.ctl.start_scp()  # starts it, or restarts it when our AE title or port changed
        self.accept()
        return True
