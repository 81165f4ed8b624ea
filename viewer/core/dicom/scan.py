"""Scan folders, files and DICOMDIRs (headers only) into a patient/study/series tree."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pydicom
import pydicom.fileset  # a submodule: `import pydicom` alone does not load it

from viewer.core.dicom.fastscan import scan_headers
from viewer.core.dicom.header import InstanceHeader, NotDicomError, read_header
from viewer.core.dicom.series import PatientInfo, SeriesInfo, StudyInfo, group_headers
from viewer.core.errors import HounsfieldError

# Files that are certainly not DICOM: skipped without opening them.
_SKIP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".raw", ".txt", ".md", ".json", ".xml",
                  ".png", ".jpg", ".jpeg", ".pdf", ".csv", ".html", ".zip", ".gz", ".py")


@dataclass
class ScanResult:
    root: str
    patients: list[PatientInfo] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one sentence per unreadable DICOM file
    skipped: int = 0  # files that are not DICOM
    changed: int = 0  # files re-read because they changed since the last scan (index)
    vanished: int = 0  # files the index knew that are gone

    @property
    def studies(self) -> list[StudyInfo]:
        return [s for p in self.patients for s in p.studies]

    @property
    def series(self) -> list[SeriesInfo]:
        return [s for st in self.studies for s in st.series]

    @property
    def image_series(self) -> list[SeriesInfo]:
        return [s for s in self.series if s.is_image]

    @property
    def other_objects(self) -> list[SeriesInfo]:
        return [s for s in self.series if not s.is_image]

    def find(self, series: str) -> list[SeriesInfo]:
        """Series whose id equals ``series``, else all parts of the DICOM series with that UID."""
        exact = [s for s in self.series if s.id == series]
        return exact or [s for s in self.series if s.uid == series and s.is_image]


def list_files(path: str) -> list[str]:
    """Every candidate file under ``path`` (a file, a folder tree, or a DICOMDIR)."""
    if os.path.isfile(path):
        if os.path.basename(path).upper() == "DICOMDIR":
            return dicomdir_files(path)
        return [os.path.abspath(path)]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.lower().endswith(_SKIP_SUFFIXES) or name.upper() == "DICOMDIR":
                continue
            out.append(os.path.abspath(os.path.join(dirpath, name)))
    return out


def dicomdir_files(path: str) -> list[str]:
    """Files referenced by a DICOMDIR's records."""
    try:
        fs = pydicom.fileset.FileSet(pydicom.dcmread(path))
    except Exception as exc:
        raise HounsfieldError(f"The DICOMDIR at {path} could not be read ({type(exc).__name__}).") from exc
    return sorted({os.path.abspath(str(inst.path)) for inst in fs})


def describe_error(path: str, exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return f"{os.path.basename(path)} could not be read as DICOM ({text})."


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of the name, kept as surrogates by os.fsdecode
        return False
    return True


def read_headers(files: list[str], known: dict[str, InstanceHeader] | None = None, fast_path: bool = True):
    """Read headers of ``files``, reusing ``known`` ones whose size and mtime are unchanged.

    Returns (headers, errors, skipped, changed).
    """
    headers, errors, skipped, changed = [], [], 0, 0
    known = known or {}
    todo = []
    for path in files:
        old = known.get(path)
        if old is not None:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_mtime_ns == old.mtime_ns and st.st_size == old.size:
                headers.append(old)
                continue
            changed += 1
        todo.append(path)
    # GDCM takes file names as UTF-8 text: a name that is not UTF-8 on disk (old media, Latin-1
    # folders) would fail its whole batch, so such files go to pydicom, which opens the raw bytes.
    gdcm_ok = [p for p in todo if _is_utf8(p)] if fast_path else []
    fast, rest = scan_headers(gdcm_ok) if gdcm_ok else ([], [])
    rest += [p for p in todo if not (fast_path and _is_utf8(p))]
    headers.extend(fast)
    for path in rest:
        try:
            headers.append(read_header(path))
        except NotDicomError:
            skipped += 1
        except Exception as exc:  # truncated or malformed: report, keep going
            errors.append(describe_error(path, exc))
    return headers, errors, skipped, changed


def scan_path(path, index=None) -> ScanResult:
    """Scan ``path``; with a ``StudyIndex``, reuse its headers for unchanged files and update it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise HounsfieldError(f"There is no file or folder at {path}; check the path.")
    root = os.path.abspath(path)
    files = list_files(root)
    known = index.headers_under(root) if index is not None else {}
    headers, errors, skipped, changed = read_headers(files, known)
    vanished = len(set(known) - set(files)) if known else 0
    if index is not None:
        index.record(root, headers, files)
    result = ScanResult(root, group_headers(headers), errors, skipped, changed, vanished)
    return result
