"""Registrations saved with the study, beside the saved measurements (``viewer.paths.data_dir()``):

- ``registrations.json``: one entry per registered pair, keyed ``"<fixed series UID>|<moving series UID>"``,
  holding ``Registration.to_dict()`` (the 4x4 matrix of a rigid one, the ITK transform text of a
  deformable one) and the names of the files below;
- ``registrations/<id>.dcm``: a rigid registration as a DICOM Spatial Registration object (other systems
  can read it; ``viewer.core.io.spatial_registration``), written when both series' volumes are at hand;
- ``registrations/<id>.tfm``: a deformable one as an ITK transform file (fixed -> moving).

Reopening both series finds the pair again (:func:`load_registrations`).  Written atomically (a
temporary file, then a rename), as the measurements are.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from viewer.core.errors import HounsfieldError
from viewer.core.registration import Registration
from viewer.logs import log
from viewer.paths import data_dir

VERSION = 1


def store_path() -> str:
    return os.path.join(data_dir(), "registrations.json")


def files_dir(path: str | None = None) -> str:
    return os.path.join(os.path.dirname(path or store_path()), "registrations")


def pair_key(fixed_uid: str, moving_uid: str) -> str:
    return f"{fixed_uid}|{moving_uid}"


def _file_id(fixed_uid: str, moving_uid: str) -> str:
    return hashlib.sha1(pair_key(fixed_uid, moving_uid).encode()).hexdigest()[:16]


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {"version": VERSION, "pairs": {}}
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), dict):
        return {"version": VERSION, "pairs": {}}
    return data


def _write(path: str, data: dict) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".registrations-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def save_registration(reg: Registration, fixed=None, moving=None, path: str | None = None) -> dict:
    """Save ``reg`` (replacing what was saved for the same pair, either direction); ``fixed`` and
    ``moving`` (the volumes) let a rigid one be written as a DICOM registration object too.  Returns the
    saved entry (with ``sro`` / ``tfm`` file paths where written)."""
    if not reg.fixed_uid or not reg.moving_uid:
        raise HounsfieldError("A registration can only be saved between two series with UIDs; open them from DICOM.")
    path = path or store_path()
    data = _read(path)
    data["pairs"].pop(pair_key(reg.moving_uid, reg.fixed_uid), None)  # the other direction is the same alignment
    entry = reg.to_dict()
    folder = files_dir(path)
    os.makedirs(folder, exist_ok=True)
    name = _file_id(reg.fixed_uid, reg.moving_uid)
    if reg.kind == "deformable":
        entry["tfm_file"] = reg.save(os.path.join(folder, name + ".tfm"))
    elif fixed is not None and moving is not None:
        from viewer.core.io.spatial_registration import write_spatial_registration

        try:
            entry["sro_file"] = write_spatial_registration(os.path.join(folder, name + ".dcm"), reg, fixed, moving)
        except (HounsfieldError, OSError, ValueError):
            log.warning("registration not written as a DICOM registration object", exc_info=True)
    data["pairs"][pair_key(reg.fixed_uid, reg.moving_uid)] = entry
    data["version"] = VERSION
    _write(path, data)
    return entry


def _from_entry(entry: dict) -> Registration | None:
    try:
        return Registration.from_dict(entry)
    except (HounsfieldError, KeyError, ValueError, TypeError):
        pass
    for key, reader in (("tfm_file", _read_tfm), ("sro_file", _read_sro)):  # the JSON damaged: the files
        if entry.get(key) and os.path.exists(entry[key]):
            try:
                reg = reader(entry[key])
                reg.fixed_uid = reg.fixed_uid or str(entry.get("fixed_uid", ""))
                reg.moving_uid = reg.moving_uid or str(entry.get("moving_uid", ""))
                return reg
            except (HounsfieldError, RuntimeError, ValueError):
                continue
    log.warning("a saved registration could not be read and was left out")
    return None


def _read_tfm(p: str) -> Registration:
    return Registration.load(p, kind="deformable")


def _read_sro(p: str) -> Registration:
    from viewer.core.io.spatial_registration import read_spatial_registration

    return read_spatial_registration(p)


def load_registration(fixed_uid: str, moving_uid: str, path: str | None = None) -> Registration | None:
    """The saved registration of the pair as stored (fixed -> moving), or None.  Either direction is
    looked up; the stored direction is returned (the caller inverts it when needed)."""
    data = _read(path or store_path())["pairs"]
    entry = data.get(pair_key(fixed_uid, moving_uid)) or data.get(pair_key(moving_uid, fixed_uid))
    return _from_entry(entry) if entry else None


def load_registrations(series_uids, path: str | None = None) -> list[Registration]:
    """Every saved registration between two of ``series_uids``."""
    uids = {u for u in series_uids if u}
    out = []
    for entry in _read(path or store_path())["pairs"].values():
        if entry.get("fixed_uid") in uids and entry.get("moving_uid") in uids:
            reg = _from_entry(entry)
            if reg is not None:
                out.append(reg)
    return out


def remove_registration(fixed_uid: str, moving_uid: str, path: str | None = None) -> None:
    path = path or store_path()
    data = _read(path)
    for key in (pair_key(fixed_uid, moving_uid), pair_key(moving_uid, fixed_uid)):
        entry = data["pairs"].pop(key, None)
        for f in ((entry or {}).get("tfm_file"), (entry or {}).get("sro_file")):
            if f and os.path.exists(f):
                os.unlink(f)
    _write(path, data)
