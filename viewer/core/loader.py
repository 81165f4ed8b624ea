"""The public entry points: ``scan`` a path and ``load`` a volume from it.

``SeriesLoader`` is the progressive form the viewer uses: it allocates the volume at once
(geometry known from headers) and fills slices in the background, calling back per slice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import psutil

from viewer.core.dicom.decode import blank_value, decode_stack, finite_rescale, output_plan
from viewer.core.dicom.geometry import StackGeometry, stack_geometry
from viewer.core.dicom.index import StudyIndex
from viewer.core.dicom.scan import ScanResult, scan_path
from viewer.core.dicom.series import SeriesInfo
from viewer.core.errors import HounsfieldError, shown
from viewer.core.formats import VOLUME_SUFFIXES
from viewer.core.volume import SourceInfo, Volume


def scan(path, *, use_index: bool = True) -> ScanResult:
    """Scan a folder, file or DICOMDIR (headers only), remembering it in the study index."""
    index = None
    if use_index:
        try:
            index = StudyIndex()
        except Exception:  # an unwritable data dir must not stop reading
            index = None
    try:
        return scan_path(path, index)
    finally:
        if index is not None:
            index.close()


def _volume_files(root) -> list[str]:
    """The NIfTI, NRRD and MetaImage files directly in folder ``root`` (sorted names)."""
    try:
        names = sorted(os.listdir(root)) if os.path.isdir(root) else []
    except OSError:
        return []
    return [n for n in names if n.lower().endswith(VOLUME_SUFFIXES)]


def choose_series(result: ScanResult, series: str | None) -> tuple[SeriesInfo, list[str]]:
    """The series to load (by id or UID, else the largest image series) and notes about the choice."""
    notes: list[str] = []
    images = result.image_series
    if series is not None:
        found = result.find(series)
        if not found:
            raise HounsfieldError(f"No image series with UID {shown(series)} in {result.root}; "
                                  "run 'hounsfield info' to list the series.")
        if len(found) > 1:
            notes.append(f"Series {shown(series)} was split into {len(found)} volumes ({found[0].split_reason}); "
                         f"loaded {found[0].id}, the largest.")
        return max(found, key=lambda s: len(s.frames)), notes
    if not images:
        what = ", ".join(sorted({shown(s.sop_class_name) for s in result.other_objects}))
        extra = f" (it holds only {what})" if what else ""
        # The first file's reason (a header declaring more than its file holds, say) ends the sentence.
        errs = f"; {len(result.errors)} file(s) could not be read: {result.errors[0]}" if result.errors else "."
        volumes = _volume_files(result.root)
        if volumes and not result.errors and not what:  # a folder of NIfTI/NRRD files: say which to open
            errs = f"; it holds {len(volumes)} image file(s): open one of them, e.g. {volumes[0]}."
        raise HounsfieldError(f"No DICOM images were found in {result.root}{extra}{errs}")
    best = max(images, key=lambda s: len(s.frames))
    if len(images) > 1:
        notes.append(f"{len(images)} image series found; loaded the largest ({shown(best.id)}); "
                     "pass series= to choose another.")
    return best, notes


def image_numbers(geometry: StackGeometry) -> tuple[int | None, ...]:
    """The image number of each k slice as PACS shows it: the InstanceNumber, or the frame number
    (1-based) of a multi-frame object; None in a gap or where a file has no InstanceNumber."""
    numbers: list[int | None] = [None] * geometry.depth
    for f, k in zip(geometry.frames, geometry.slots):
        multi = f.frame.index is not None and len(f.instance.frames) > 1
        numbers[k] = f.frame.index + 1 if multi else f.instance.instance_number
    return tuple(numbers)


def source_info(series: SeriesInfo, sop_uids: tuple[str, ...],
                instance_numbers: tuple[int | None, ...] = ()) -> SourceInfo:
    h = series.first
    return SourceInfo(
        patient_name=h.patient_name, patient_id=h.patient_id, patient_birth_date=h.patient_birth_date,
        patient_sex=h.patient_sex, study_instance_uid=h.study_uid, study_date=h.study_date,
        study_description=h.study_description, accession_number=h.accession_number,
        series_instance_uid=h.series_uid, series_number=h.series_number,
        series_description=h.series_description, frame_of_reference_uid=h.frame_of_reference_uid,
        sop_class_uid=h.sop_class_uid, sop_instance_uids=sop_uids, instance_numbers=instance_numbers,
        manufacturer=h.manufacturer,
        path=os.path.dirname(h.path),
    )


def check_memory(series_id: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a volume the machine cannot hold before allocating it (a corrupt Rows, Columns or slice
    position can declare hundreds of gigabytes; numpy would raise a bare MemoryError, or the
    allocation would succeed lazily and the system would kill the viewer while it fills)."""
    need = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    free = psutil.virtual_memory().available
    try:  # a process limited in address space (ulimit -v) can hold less than the machine has free
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            free = min(free, max(0, limit - psutil.Process().memory_info().vms))
    except (ImportError, OSError, ValueError):
        pass
    if need > free:
        raise HounsfieldError(
            f"Series {shown(series_id)} needs {need / 1e9:.1f} GB of memory for {shape[0]} slice(s) of "
            f"{shape[2]} x {shape[1]} pixels but only {free / 1e9:.1f} GB is free; close other programs, "
            "or check the files if these sizes are wrong.")


class SeriesLoader:
    """Allocate a series' volume from its headers, then decode its slices into it.

    ``volume`` is usable (geometry, blank slices) before ``run`` fills it; ``loaded`` marks
    which k slices hold decoded pixels.
    """

    def __init__(self, series: SeriesInfo, notes: list[str] | None = None):
        if not series.frames:
            raise HounsfieldError(f"Series {shown(series.id)} holds no images ({shown(series.sop_class_name)}).")
        self.series = series
        first = series.first
        frames, rescale_notes = finite_rescale(series.frames, first.modality, first.rescale_type)
        self.geometry: StackGeometry = stack_geometry(frames)
        sizes = {(f.instance.rows, f.instance.columns) for f in self.geometry.frames}
        if len(sizes) != 1:
            raise HounsfieldError(f"Series {shown(series.id)} mixes image sizes and cannot be stacked.")
        dtype, rescale, self.mode = output_plan(self.geometry)
        shape = (self.geometry.depth, first.rows, first.columns)
        check_memory(series.id, shape, dtype)
        array = np.empty(shape, dtype=dtype)
        filled = set(self.geometry.slots)
        for k in range(shape[0]):
            if k not in filled:
                array[k] = blank_value(self.mode, dtype)
        sop_uids = tuple(dict.fromkeys(f.instance.sop_instance_uid for f in self.geometry.frames))
        self.volume = Volume(
            array, self.geometry.affine, modality=first.modality or "OT",
            units="HU" if self.mode == "hu" else "", rescale=rescale,
            source=replace(source_info(series, sop_uids, image_numbers(self.geometry)),
                           blank_slices=tuple(k for k in range(shape[0]) if k not in filled)),
            warnings=[*(notes or []), *rescale_notes, *self.geometry.warnings], window=first.window,
        )
        self.loaded = np.zeros(shape[0], dtype=bool)
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self, on_slice: Callable[[int], None] | None = None, order: list[int] | None = None) -> Volume:
        """Decode every slice (blocking); ``on_slice(k)`` after each.  Raises LoadCancelled."""

        def mark(k: int) -> None:
            self.loaded[k] = True
            if on_slice is not None:
                on_slice(k)

        failures = decode_stack(self.geometry, self.volume.array, self.mode, order=order,
                                on_slice=mark, cancel=self.cancel_event)
        total = len(self.geometry.frames)
        if failures and len(failures) >= len({f.instance.path for f in self.geometry.frames}):
            raise HounsfieldError(f"None of the {total} images of series {shown(self.series.id)} could be decoded: "
                                  f"{failures[0]}")
        self.volume.warnings.extend(failures)
        return self.volume


def load(path, series: str | None = None, *, progress: Callable[[int, int], None] | None = None,
         use_index: bool = True) -> Volume:
    """Load one volume.  ``progress(done, total)`` is called as slices decode."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise HounsfieldError(f"There is no file or folder at {path}; check the path.")
    from viewer.core.formats import is_volume_file, read_volume  # SimpleITK: off the DICOM start-up path

    if os.path.isfile(path) and is_volume_file(path):
        return read_volume(path)
    result = scan(path, use_index=use_index)
    chosen, notes = choose_series(result, series)
    if result.errors:
        notes.append(f"{len(result.errors)} file(s) could not be read and were left out: {result.errors[0]}")
    loader = SeriesLoader(chosen, notes)
    total = len(loader.geometry.frames)
    counter = [0]

    def on_slice(_k: int) -> None:
        counter[0] += 1
        if progress is not None:
            progress(counter[0], total)

    return loader.run(on_slice)
