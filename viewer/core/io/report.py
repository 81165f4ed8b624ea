"""One call that writes a reading's whole measurement export into a folder: the SR, the CSV and
JSON tables and the key images, optionally de-identified (one ``Deidentifier`` for all files, so
that their UIDs stay consistent with each other).

The words a person typed (measurement labels, the segmentation's and its segments' names) are
free text that no profile can vet: ``clear_free_text`` (the default when de-identifying) writes the
kind of each measurement and "Segment N" instead; ``free_text`` lists them so that the export
dialog can show what would go out."""

from __future__ import annotations

import copy
import os
from dataclasses import replace

from viewer.core.errors import HounsfieldError
from viewer.core.io import keyimages, sr, tables
from viewer.core.io.deid import Deidentifier
from viewer.core.measurements import segment_stats
from viewer.core.volume import Volume
from viewer.logs import log


def free_text(measurements, segmentation=None, segments=None) -> list[str]:
    """The words typed by a person that an export would write: measurement labels, the
    segmentation's name, segment names."""
    out = [m.label for m in measurements if m.label.strip()]
    if segmentation is not None and segmentation.segments:
        out += [segmentation.name] + [s.name for s in segmentation.segments]
    out += [name for name, *_ in segments or []]
    return [t for t in out if t.strip()]


def _without_free_text(measurements, segmentation, segments):
    """Copies with the typed words replaced (the originals stay as they are)."""
    measurements = [replace(m, label="") for m in measurements]
    if segmentation is not None:
        segmentation = copy.copy(segmentation)  # shares the label maps, which are only read
        segmentation.name = "Segmentation"
        segmentation.segments = [replace(s, name=f"Segment {n}", description="")
                                 for n, s in enumerate(segmentation.segments, start=1)]
    segments = [(f"Segment {n}", *rest) for n, (_name, *rest) in enumerate(segments or [], start=1)]
    return measurements, segmentation, segments


def export_report(folder, measurements, volume: Volume, *, key_images=(), segments=None, segmentation=None,
                  deidentify: bool = False, clear_free_text: bool | None = None, basename: str = "measurements",
                  write_sr: bool = True, write_tables: bool = True, progress=None, review: dict | None = None,
                  detections: list | None = None, images: bool = False) -> dict[str, list[str]]:
    """Write ``basename``.dcm (the SR, when there is something to report), .csv, .json and
    key-image-N.png/.dcm into ``folder``; with ``segmentation`` (on ``volume``'s grid) also its
    DICOM SEG (``basename``-segmentation.dcm, when the volume came from DICOM), each non-empty
    segment's statistics in the tables, and in the SR as a volumetric group referring to the SEG.

    ``key_images``: [(rgb, orientation letters (row, column), source SOP instance UID or None
    [, whether text that could identify is burnt in: True unless said otherwise])].
    ``segments``: [(name, SegmentStats, (SEG SOP instance UID, segment number) or None)].
    ``clear_free_text``: write no typed words (default: when de-identifying).
    ``write_sr``, ``write_tables``: whether to write the SR, and the CSV and JSON tables (what is not
    asked for is never written; the files that are share one de-identification).
    ``progress``: called with (step, steps, what) before each file.
    ``review``: {segment number: viewer.core.review.segment_review dict}: whether an algorithm made the
    segment and a person accepted or edited it, with the agreement figures, into the SR and the tables.
    ``detections``: [(label, centre LPS, viewer.core.review.marker_flags dict)]: the AI's detections as
    reviewed, into the SR (point findings) and the tables.
    ``images``: also the series' own DICOM images, into ``folder``/images (source_images.py; with the
    export's de-identification, so the SEG and SR refer to them), making the export stand on its own.
    Returns the written paths by kind.
    """
    os.makedirs(folder, exist_ok=True)
    deid = Deidentifier() if deidentify else None
    if clear_free_text is None:
        clear_free_text = deidentify
    if clear_free_text:
        measurements, segmentation, segments = _without_free_text(measurements, segmentation, segments)
    steps = (1 + (1 if write_sr else 0) + (2 if write_tables else 0) + len(key_images)
             + (1 if segmentation is not None and segmentation.segments else 0) + (1 if images else 0))
    step = iter(range(steps))

    def report(what: str) -> None:
        if progress is not None:
            progress(next(step, steps - 1), steps, what)

    src = volume.source
    units = volume.units
    out: dict[str, list[str]] = {"sr": [], "csv": [], "json": [], "png": [], "sc": [], "seg": [], "images": []}
    if images:  # first: a series whose files are gone or burnt-in stops the export before anything is written
        from viewer.core.io.source_images import FOLDER, write_source_images

        report("images")
        out["images"] = write_source_images(volume, os.path.join(folder, FOLDER), deid)
    segments = list(segments or [])
    reviews_by_ref: dict = {}
    seg_reviews: list = [None] * len(segments)
    if segmentation is not None and segmentation.segments:
        report("segmentation")
        segments += _segmentation_entries(folder, basename, segmentation, volume, deid, out, review, reviews_by_ref,
                                          seg_reviews)
    seg_stats = [(n, s) for n, s, _ in segments]
    seg_refs = [(n, s, ref) for n, s, ref in segments if ref is not None]
    if write_sr:
        report("report")
    if write_sr and (measurements or seg_refs or detections):  # an SR needs at least one measurement group
        path = os.path.join(folder, f"{basename}.dcm")
        sr.write_sr(path, measurements, src, modality=volume.modality, units=units, segments=seg_refs,
                    deidentifier=deid, reviews=reviews_by_ref, detections=detections)
        out["sr"].append(path)
    if write_tables:
        report("tables")
        path = os.path.join(folder, f"{basename}.csv")
        tables.write_csv(path, measurements, units, seg_stats, src.series_instance_uid, deid,
                         reviews=seg_reviews, detections=detections)
        out["csv"].append(path)
        report("tables")
        path = os.path.join(folder, f"{basename}.json")
        tables.write_json(path, measurements, src, units, seg_stats, deid, reviews=seg_reviews,
                          detections=detections)
        out["json"].append(path)
    series_uid = sr.generate_uid()
    for n, (rgb, orientation, source_uid, *burnt) in enumerate(key_images, start=1):
        report("key image")
        png = os.path.join(folder, f"key-image-{n}.png")
        dcm = os.path.join(folder, f"key-image-{n}.dcm")
        keyimages.write_key_image(png, dcm, rgb, src, orientation=orientation, series_uid=series_uid,
                                  instance_number=n, source_uid=source_uid, deidentifier=deid,
                                  burned_in_annotation=bool(burnt[0]) if burnt else True)
        out["png"].append(png)
        out["sc"].append(dcm)
    return out


def _segmentation_entries(folder, basename: str, segmentation, volume: Volume, deid, out, review=None,
                          reviews_by_ref=None, seg_reviews=None) -> list[tuple]:
    """(name, stats, SEG reference or None) of each non-empty segment; writes the DICOM SEG (de-identified
    with the export's own ``deid``, so the SR's references to it stay right) when it can."""
    from viewer.core.io.seg_dicom import write_dicom_seg

    ref_of = {}
    path = os.path.join(folder, f"{basename}-segmentation.dcm")
    seg_uid, seg_series = sr.generate_uid(), sr.generate_uid()
    try:
        write_dicom_seg(segmentation, volume, path, series_description=f"SEG {segmentation.name}"[:64],
                        sop_instance_uid=seg_uid, series_instance_uid=seg_series, deidentifier=deid)
    except HounsfieldError as exc:  # e.g. a NIfTI volume: statistics go in the tables only
        log.info("measurement export without a DICOM SEG: %s", exc)
    else:
        out["seg"].append(path)
        # write_dicom_seg numbers the segments 1..n in list order
        ref_of = {id(s): (seg_uid, n, seg_series) for n, s in enumerate(segmentation.segments, start=1)}
    entries = []
    for s in segmentation.segments:
        mask = segmentation.mask(s)
        if not mask.any():
            continue
        entries.append((s.name, segment_stats(mask, volume), ref_of.get(id(s))))
        rv = (review or {}).get(s.number)
        if seg_reviews is not None:
            seg_reviews.append(rv)
        if rv is not None and ref_of.get(id(s)) is not None and reviews_by_ref is not None:
            reviews_by_ref[ref_of[id(s)][:2]] = rv
    return entries
