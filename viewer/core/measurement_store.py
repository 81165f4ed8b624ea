"""Measurements saved with the study: one JSON file beside the local study index
(``measurements.json`` in ``viewer.paths.data_dir()``), keyed by series instance UID.

Written atomically (a temporary file, then a rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile

from viewer.core.measurements import Measurement
from viewer.paths import data_dir

VERSION = 1


def store_path() -> str:
    return os.path.join(data_dir(), "measurements.json")


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {"version": VERSION, "series": {}}
    if not isinstance(data, dict) or not isinstance(data.get("series"), dict):
        return {"version": VERSION, "series": {}}
    return data


def load_measurements(series_uid: str, path: str | None = None) -> list[Measurement]:
    """The measurements saved for a series (none when the file or the series is absent)."""
    if not series_uid:
        return []
    out = []
    for d in _read(path or store_path())["series"].get(series_uid, []):
        try:
            out.append(Measurement.from_dict(d))
        except (KeyError, ValueError, TypeError):
            continue  # one damaged entry must not hide the others
    return out


def save_measurements(series_uid: str, measurements: list[Measurement], path: str | None = None) -> None:
    """Replace what is saved for ``series_uid`` (an empty list removes the series' entry)."""
    if not series_uid:
        return
    path = path or store_path()
    data = _read(path)
    if measurements:
        data["series"][series_uid] = [m.to_dict() for m in measurements]
    else:
        data["series"].pop(series_uid, None)
    data["version"] = VERSION
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".measurements-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
