"""Start the Qt application.  (Placeholder window until the reading viewer lands.)"""

from __future__ import annotations

import sys


def run_viewer(path: str | None = None, *, series: str | None = None) -> int:
    """Open the main window on ``path`` (None: the built-in demo study); return the exit code."""
    import numpy as np
    from PySide6.QtGui import QImage, QPixmap
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    import viewer

    app = QApplication.instance() or QApplication(sys.argv)
    vol = viewer.demo_volume() if path is None else viewer.load(path, series=series)
    center, width = vol.window or (40.0, 400.0)
    sl = vol.real_values(np.s_[vol.shape[0] // 2]).astype(np.float32)
    img = np.clip((sl - (center - width / 2)) / width * 255, 0, 255).astype(np.uint8)
    qimg = QImage(img.data, img.shape[1], img.shape[0], img.strides[0], QImage.Format.Format_Grayscale8)
    win = QMainWindow()
    win.setWindowTitle("Hounsfield")
    label = QLabel()
    label.setPixmap(QPixmap.fromImage(qimg.copy()))
    win.setCentralWidget(label)
    win.show()
    return app.exec()
