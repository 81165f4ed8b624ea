"""*Compare > Register to...*: which series to register the active one to, rigid or deformable, a
progress bar while it runs on its worker thread, and Cancel (nothing changes when cancelled)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QProgressBar,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from viewer.core.errors import HounsfieldError


def series_label(state) -> str:
    src = state.volume.source
    date = getattr(src, "study_date", "") or ""
    text = f"{state.volume.modality} {src.series_description or state.key}"
    return f"{text}  ({date})" if date else text


class RegisterDialog(QDialog):
    def __init__(self, controller, moving: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Register series")
        self.controller, self.moving = controller, moving
        model = controller.model
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("Move:", QLabel(series_label(model.series[moving])))
        self.target = QComboBox()
        for key in controller.candidates(moving):
            self.target.addItem(series_label(model.series[key]), key)
        form.addRow("Onto (fixed):", self.target)
        kinds = QWidget()
        row = QVBoxLayout(kinds)
        row.setContentsMargins(0, 0, 0, 0)
        self.rigid = QRadioButton("Rigid (rotation and shift; mutual information, CT and MR)")
        self.deformable = QRadioButton("Deformable (rigid, then a B-spline: breathing, soft tissue)")
        self.rigid.setChecked(True)
        row.addWidget(self.rigid)
        row.addWidget(self.deformable)
        form.addRow("Kind:", kinds)
        layout.addLayout(form)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        self.buttons = QDialogButtonBox()
        self.start_button = self.buttons.addButton("Register", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        layout.addWidget(self.buttons)
        controller.progress.connect(self._progress)
        controller.registered.connect(self._done)
        controller.registration_failed.connect(self._failed)
        controller.registration_cancelled.connect(self._cancelled)
        self.start_button.setEnabled(self.target.count() > 0)
        if self.target.count() == 0:
            self.status.setText("Open a second series to register this one to.")
        self.resize(520, self.sizeHint().height())

    @property
    def kind(self) -> str:
        return "deformable" if self.deformable.isChecked() else "rigid"

    def start(self) -> None:
        fixed = self.target.currentData()
        try:
            self.controller.start_registration(fixed, self.moving, self.kind)
        except HounsfieldError as exc:
            self.status.setText(str(exc))
            return
        self.start_button.setEnabled(False)
        self.target.setEnabled(False)
        self.bar.setValue(0)
        self.status.setText(f"Registering ({self.kind})...")

    def cancel(self) -> None:
        """Stop a running registration (nothing changes); close when none runs."""
        if self.controller.running:
            self.controller.cancel_registration()
            self.status.setText("Cancelling...")
            self.cancel_button.setEnabled(False)
        else:
            self.reject()

    def _progress(self, fraction: float, text: str) -> None:
        self.bar.setValue(int(round(1000 * max(0.0, min(1.0, fraction)))))
        self.status.setText(text)

    def _idle(self) -> None:
        self.start_button.setEnabled(True)
        self.target.setEnabled(True)
        self.cancel_button.setEnabled(True)

    def _done(self, reg) -> None:
        self.bar.setValue(1000)
        self._idle()
        self.status.setText(f"Registered ({reg.kind}) in {reg.seconds:.1f} s; linked scrolling follows the anatomy.")
        self.accept()

    def _failed(self, text: str) -> None:
        self._idle()
        self.status.setText(text)

    def _cancelled(self) -> None:
        self._idle()
        self.bar.setValue(0)
        self.status.setText("Cancelled; nothing was changed.")

    def done(self, result: int) -> None:  # closing: stop listening (the dialog may outlive nothing)
        c = self.controller
        for sig, fn in ((c.progress, self._progress), (c.registered, self._done),
                        (c.registration_failed, self._failed), (c.registration_cancelled, self._cancelled)):
            try:
                sig.disconnect(fn)
            except (RuntimeError, TypeError):
                pass
        if c.running and result != QDialog.DialogCode.Accepted:
            c.cancel_registration()
        super().done(result)
