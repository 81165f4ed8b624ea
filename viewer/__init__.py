"""Hounsfield: a reading viewer for radiologists.

Public API (kept light: importing ``viewer`` loads neither Qt, VTK nor torch)::

    import viewer
    vol = viewer.load("/path/to/study")          # folder, file, DICOMDIR, NIfTI/NRRD/MHA
    vol = viewer.load(path, series="1.2.3...")   # pick one series by its UID
    studies = viewer.scan("/path/to/folder")     # patients/studies/series found, headers only
    viewer.save(vol, "out.nii.gz")               # NIfTI, NRRD or MHA with correct geometry
    ws = viewer.Workspace()                      # a reading session without a window:
    s = ws.open(path)                            #   series, overlays, undo, journal, export

Bad input raises ``viewer.HounsfieldError`` whose message is one sentence.
"""

from viewer.core.errors import HounsfieldError
from viewer.core.volume import SourceInfo, Volume

__all__ = ["HounsfieldError", "SourceInfo", "Volume", "Workspace", "load", "save", "scan", "demo_volume"]
__version__ = "0.1.0"


def load(path, series: str | None = None, *, progress=None) -> Volume:
    """Load one volume from a folder, a file, a DICOMDIR or a NIfTI/NRRD/MHA file."""
    from viewer.core.loader import load as _load

    return _load(path, series=series, progress=progress)


def scan(path):
    """Scan a folder, file or DICOMDIR (headers only) and return a ``ScanResult``."""
    from viewer.core.loader import scan as _scan

    return _scan(path)


def save(volume: Volume, path) -> None:
    """Write a volume as NIfTI (.nii, .nii.gz), NRRD (.nrrd) or MetaImage (.mha, .mhd)."""
    from viewer.core.formats import write_volume

    write_volume(volume, path)


def demo_volume() -> Volume:
    """The built-in demo study: a procedurally generated chest CT phantom."""
    from viewer.core.demo import demo_volume as _demo

    return _demo()


def __getattr__(name):
    if name == "Workspace":  # loaded on first use: ``import viewer`` stays light
        from viewer.core.workspace import Workspace

        return Workspace
    raise AttributeError(f"module 'viewer' has no attribute {name!r}")
