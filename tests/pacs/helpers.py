"""Checks shared by the PACS tests."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom

import viewer


def assert_one_sentence(message: str) -> None:
    """A user-facing error: one line, one sentence, ending with a full stop."""
    assert "\n" not in message, message
    assert message.endswith("."), message
    assert message[0].isupper(), message
    assert not re.search(r"[.!?]\s+[A-Z]", message[:-1]), f"more than one sentence: {message}"
    assert "Traceback" not in message


def assert_same_volume(retrieved: Path, original: Path) -> None:
    """The retrieved series loads to exactly the original's voxels and geometry."""
    a, b = viewer.load(retrieved), viewer.load(original)
    assert a.array.shape == b.array.shape
    assert a.array.dtype == b.array.dtype
    assert np.array_equal(a.array, b.array)
    assert np.allclose(a.affine, b.affine)
    assert a.source.series_instance_uid == b.source.series_instance_uid


def sop_uids(folder: Path) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in folder.glob("*.dcm")}


def leftovers(root: Path) -> list[Path]:
    """Half-written files anywhere under the managed folder (there must be none)."""
    return [p for p in root.rglob("*") if p.is_file() and (p.name.startswith(".") or p.suffix != ".dcm")]
