"""ITK's own messages kept off the terminal: they go to the log at debug level.

ITK's NIfTI library writes straight to the C stderr ("** ERROR: NWAD: wrote only 4096 of 48000
bytes to file" on a full disk, "** ERROR: nifti_convert_nhdr2nim: bad dim[0]" for a bad header),
and ITK's warnings reach it through its output window, whatever Python does with ``sys.stderr``.
Those lines stood beside, and said less than, the one sentence we raise for the same fault.  So
file descriptor 2 itself is pointed at a scratch file for the length of a SimpleITK read or
write, and what landed there is logged.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from contextlib import contextmanager

log = logging.getLogger("hounsfield.itk")
log.setLevel(logging.DEBUG)  # kept in the log file (at INFO by default) as DEBUG records, marked as such

# fd 2 belongs to the whole process: two threads may not swap it at once (reads are serialised
# while one holds it; SimpleITK file I/O is short beside everything else a load does).
_swap = threading.Lock()


@contextmanager
def itk_stderr_logged(what: str):
    """Run the body with the process's stderr captured; log what ITK printed, naming ``what``
    (a file name: logs carry paths, never patient data).  Anything else that wrote to stderr in
    that time (another thread) lands in the same debug record rather than being lost."""
    with _swap:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (a windowed build): nothing to keep ITK away from
            yield
            return
        sink = tempfile.TemporaryFile()
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            sink.close()
            if text:  # logged whether the body raised or not: the ITK text explains the error
                log.debug("ITK on %s: %s", what, text)
