"""Logging: tracebacks go to a log file in the user's log directory, never to the user's face.

Log records must not carry patient-identifying data: log paths and UIDs, never names or IDs.
Python warnings (pydicom warns about every oddity it tolerates) go to the same file: on a terminal
they would stand beside, and contradict, the one sentence the command line prints.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

from viewer.paths import log_dir

log = logging.getLogger("hounsfield")


def log_path() -> str:
    return os.path.join(log_dir(), "hounsfield.log")


def setup_logging(level: int = logging.INFO) -> str:
    """Send the 'hounsfield' logger to a rotating file; return the file's path."""
    path = log_path()
    if any(isinstance(h, logging.handlers.RotatingFileHandler) for h in log.handlers):
        return path
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3)
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn(...) becomes a record of the "py.warnings" logger
    warned = logging.getLogger("py.warnings")
    warned.addHandler(handler)
    warned.propagate = False  # never to logging's last-resort handler, which writes to stderr
    return path
