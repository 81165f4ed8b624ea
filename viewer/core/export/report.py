"""One call that writes a reading's whole measurement export into a folder: the SR, the CSV and
JSON tables and the key images, optionally de-identified (one ``Deidentifier`` for all files, so
that their UIDs stay consistent with each other)."""

from __future__ import annotations

import os

from viewer.core.export import keyimages, sr, tables
from viewer.core.export.deid import Deidentifier
from viewer.core.volume import Volume


def export_report(folder, measurements, volume: Volume, *, key_images=(), segments=None,
                  deidentify: bool = False, basename: str = "measurements") -> dict[str, list[str]]:
    """Write ``basename``.dcm (the SR, when there is something to report), .csv, .json and
    key-image-N.png/.dcm into ``folder``.

    ``key_images``: [(rgb, orientation letters (row, column), source SOP instance UID or None)].
    ``segments``: [(name, SegmentStats, (SEG SOP instance UID, segment number) or None)].
    Returns the written paths by kind.
    """
    os.makedirs(folder, exist_ok=True)
    deid = Deidentifier() if deidentify else None
    src = volume.source
    units = volume.units
    seg_stats = [(n, s) for n, s, _ in segments or []]
    seg_refs = [(n, s, ref) for n, s, ref in segments or [] if ref is not None]
    out: dict[str, list[str]] = {"sr": [], "csv": [], "json": [], "png": [], "sc": []}
    if measurements or seg_refs:  # an SR needs at least one measurement group
        path = os.path.join(folder, f"{basename}.dcm")
        sr.write_sr(path, measurements, src, modality=volume.modality, units=units, segments=seg_refs,
                    deidentifier=deid)
        out["sr"].append(path)
    path = os.path.join(folder, f"{basename}.csv")
    tables.write_csv(path, measurements, units, seg_stats, src.series_instance_uid, deid)
    out["csv"].append(path)
    path = os.path.join(folder, f"{basename}.json")
    tables.write_json(path, measurements, src, units, seg_stats, deid)
    out["json"].append(path)
    series_uid = sr.generate_uid()
    for n, (rgb, orientation, source_uid) in enumerate(key_images, start=1):
        png = os.path.join(folder, f"key-image-{n}.png")
        dcm = os.path.join(folder, f"key-image-{n}.dcm")
        keyimages.write_key_image(png, dcm, rgb, src, orientation=orientation, series_uid=series_uid,
                                  instance_number=n, source_uid=source_uid, deidentifier=deid)
        out["png"].append(png)
        out["sc"].append(dcm)
    return out
