"""LIDC-IDRI reader annotations (``reads.xml``, the LIDC XML format) into per-reader nodule masks.

Each ``readingSession`` is one radiologist's read; each ``unblindedReadNodule`` a nodule they
marked: nodules of 3 mm or more come with contours (``roi``: a slice z = ImagePositionPatient z,
``inclusion`` TRUE for the outline, FALSE for a hole, ``edgeMap`` pixel x/y points), smaller ones
with a single point.  Characteristics (subtlety, malignancy, ... 1-5) are kept as given.

    reads = parse_reads(path)                      # [Read(reader, nodules=[LidcNodule, ...]), ...]
    masks = reader_masks(reads, volume)            # {(reader, nodule_id): bool [k, j, i]}
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viewer.core.errors import HounsfieldError


@dataclass
class Roi:
    z: float
    inclusion: bool
    points: np.ndarray  # (n, 2) pixel (x, y) = (i, j)


@dataclass
class LidcNodule:
    nodule_id: str
    rois: list[Roi]
    characteristics: dict[str, int] = field(default_factory=dict)

    @property
    def contoured(self) -> bool:
        return any(len(r.points) > 2 for r in self.rois)


@dataclass
class Read:
    reader: int  # the session's index in the file
    reader_id: str
    nodules: list[LidcNodule]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el, name):
    return [c for c in el if _local(c.tag) == name]


def _text(el, name, default=""):
    for c in el:
        if _local(c.tag) == name:
            return (c.text or "").strip()
    return default


def parse_reads(path) -> list[Read]:
    """The readers' nodules in an LIDC ``reads.xml`` (non-nodules are left out)."""
    try:
        root = ET.parse(Path(path)).getroot()
    except (OSError, ET.ParseError) as exc:
        raise HounsfieldError(f"The LIDC annotation file {Path(path).name} could not be read ({exc}).") from None
    reads = []
    for n, sess in enumerate(_children(root, "readingSession")):
        nodules = []
        for nod in _children(sess, "unblindedReadNodule"):
            rois = []
            for roi in _children(nod, "roi"):
                pts = [(int(_text(e, "xCoord")), int(_text(e, "yCoord"))) for e in _children(roi, "edgeMap")]
                rois.append(Roi(float(_text(roi, "imageZposition")), _text(roi, "inclusion").upper() == "TRUE",
                                np.array(pts, int).reshape(-1, 2)))
            chars = {}
            for ch in _children(nod, "characteristics"):
                for c in ch:
                    if (c.text or "").strip().isdigit():
                        chars[_local(c.tag)] = int(c.text)
            nodules.append(LidcNodule(_text(nod, "noduleID"), rois, chars))
        reads.append(Read(n, _text(sess, "servicingRadiologistID"), nodules))
    return reads


def _fill(points: np.ndarray, shape) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("1", (shape[1], shape[0]), 0)
    pts = [tuple(map(int, p)) for p in points]
    if len(pts) >= 3:
        ImageDraw.Draw(img).polygon(pts, outline=1, fill=1)
    else:
        for p in pts:
            img.putpixel(p, 1)
    return np.array(img, bool)


def reader_masks(reads: list[Read], volume, contoured_only: bool = True) -> dict[tuple[int, str], np.ndarray]:
    """Bool masks ``[k, j, i]`` on ``volume``'s grid, one per (reader, nodule) with contours on its
    slices (matched by slice z within half a slice spacing)."""
    depth, rows, cols = volume.shape
    zs = np.array([float(volume.index_to_lps([0, 0, k])[2]) for k in range(depth)])
    tol = 0.5 * abs(float(volume.spacing[2])) + 1e-3
    out = {}
    for read in reads:
        for nod in read.nodules:
            if contoured_only and not nod.contoured:
                continue
            mask = np.zeros(volume.shape, bool)
            for roi in sorted(nod.rois, key=lambda r: not r.inclusion):  # outlines first, then holes
                k = int(np.argmin(np.abs(zs - roi.z)))
                if abs(zs[k] - roi.z) > tol:
                    continue
                filled = _fill(roi.points, (rows, cols))
                if roi.inclusion:
                    mask[k] |= filled
                else:
                    mask[k] &= ~filled
            if mask.any():
                out[(read.reader, nod.nodule_id)] = mask
    return out
