"""Measurements saved with the study: one JSON file beside the local study index
(``measurements.json`` in ``viewer.paths.data_dir()``), keyed by series instance UID.

Written atomically (a temporary file, then a rename), so a crash never leaves half a file, and under a
lock file, so two windows or two viewers saving at once do not lose each other's changes. A window
that says which measurements it ``known`` leaves the others on disk alone: two windows on one series
each keep what the other added.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable

from filelock import FileLock, Timeout

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


def save_measurements(series_uid: str, measurements: list[Measurement], path: str | None = None,
                      known: Iterable[str] | None = None) -> None:
    """Save ``measurements`` as what is saved for ``series_uid``.

    Without ``known`` they replace the series' entry (an empty list removes it). With ``known``, the
    uids of every measurement the caller has had (loaded, drawn, since deleted), an entry on disk whose
    uid is not in it was added by another window or viewer and is kept after the caller's own.
    Raises OSError when the file cannot be written (a full disk, no permission, the lock held too long).
    """
    if not series_uid:
        return
    path = path or store_path()
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    try:
        with FileLock(path + ".lock", timeout=10):
            data = _read(path)
            entries = [m.to_dict() for m in measurements]
            if known is not None:
                mine = set(known) | {m.uid for m in measurements}
                entries += [d for d in data["series"].get(series_uid, [])
                            if isinstance(d, dict) and d.get("uid") and d["uid"] not in mine]
            if entries:
                data["series"][series_uid] = entries
            else:
                data["series"].pop(series_uid, None)
            data["version"] = VERSION
            fd, tmp = tempfile.mkstemp(prefix=".measurements-", suffix=".json", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1)
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
    except Timeout as exc:
        raise OSError(f"the measurement file is locked by another program ({path}.lock)") from exc
