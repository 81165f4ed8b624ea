"""NIfTI, NRRD and MetaImage label maps of a ``Segmentation`` (SimpleITK via viewer.core.formats,
which converts to RAS at the file boundary), with a ``<stem>.segments.json`` side file that keeps
names, colours, terminology and provenance.

A segmentation with overlapping layers is written as one label map per layer
(``<stem>.layer2.nii.gz``, ...) so that no voxel of any segment is lost.

The side file comes from outside, so it is checked before anything it says is used: it may list
layer files only by plain file name in its own folder (no folders, "..", absolute paths or links
leading out), and a malformed segment list is a one-sentence error.
"""

from __future__ import annotations

import json
import os

import numpy as np

from viewer.core.errors import HounsfieldError
from viewer.core.formats import VOLUME_SUFFIXES, read_volume, write_volume
from viewer.core.segmentation import Segmentation, add_masks
from viewer.core.volume import Volume


def _split(path: str) -> tuple[str, str]:
    low = path.lower()
    suffix = next((s for s in VOLUME_SUFFIXES if low.endswith(s)), None)
    if suffix is None:
        raise HounsfieldError(f"{os.path.basename(path)}: choose a .nii.gz, .nrrd or .mha file name.")
    return path[:-len(suffix)], path[-len(suffix):]


def sidecar(path) -> str:
    return _split(os.fspath(path))[0] + ".segments.json"


def write_labelmap(seg: Segmentation, path) -> list[str]:
    """Write the label map(s) and the side file; returns the paths written."""
    path = os.fspath(path)
    stem, suffix = _split(path)
    written = []
    for n, layer in enumerate(seg.layers):
        if n and not layer.any():
            continue
        out = path if n == 0 else f"{stem}.layer{n + 1}{suffix}"
        write_volume(Volume(layer, seg.affine, modality="SEG"), out)
        written.append(out)
    meta = seg.meta()
    meta["files"] = [os.path.basename(p) for p in written]
    side = sidecar(path)
    with open(side, "w") as f:
        json.dump(meta, f, indent=2)
    return [*written, side]


def _listed(meta: dict | None, side: str) -> list[str]:
    files = (meta or {}).get("files", [])
    if not isinstance(files, list) or not all(isinstance(p, str) for p in files):
        raise HounsfieldError(f"{os.path.basename(side)} has an invalid file list; "
                              "remove it to load the label map without names and colours.")
    return files


def _beside(path: str, side: str, name: str) -> str:
    """The layer file ``name`` that a side file lists: only a plain file name in the label map's own
    folder (no folders, no "..", no absolute path, no link that leads out of the folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    full = os.path.join(folder, name)
    plain = (name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name
             and os.path.basename(name) == name and not os.path.isabs(name) and ":" not in name)
    if not plain or os.path.dirname(os.path.realpath(full)) != os.path.realpath(folder):
        raise HounsfieldError(f"{os.path.basename(side)} names a file outside its folder ({name[:60]!r}); "
                              "keep the label maps beside it and list them by file name only.")
    return full


def read_labelmap(path, volume: Volume, name: str | None = None) -> Segmentation:
    """A segmentation on ``volume``'s grid from a label-map file (resampled with nearest neighbour
    when the file's grid differs) and its side file when there is one."""
    import SimpleITK as sitk

    from viewer.core.formats import sitk_from_volume, volume_from_sitk

    path = os.fspath(path)
    side = sidecar(path)
    meta = None
    if os.path.isfile(side):
        try:
            with open(side, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise HounsfieldError(f"{os.path.basename(side)} cannot be read ({type(exc).__name__}); "
                                  "remove it to load the label map without names and colours.") from None
        if not isinstance(meta, dict):
            raise HounsfieldError(f"{os.path.basename(side)} is not a segment list; "
                                  "remove it to load the label map without names and colours.")
    files = [path] + [_beside(path, side, p) for p in _listed(meta, side)[1:]]
    layers = []
    for p in files:
        lab = read_volume(p)
        if lab.array.dtype.kind == "f":
            lab.array = np.rint(lab.array).astype(np.int32)
        if not (tuple(lab.shape) == tuple(volume.shape) and np.allclose(lab.affine, volume.affine, atol=1e-3)):
            ref = sitk_from_volume(Volume(np.zeros(volume.shape, np.uint8), volume.affine))
            moved = sitk.Resample(sitk_from_volume(lab), ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
            lab = volume_from_sitk(moved)
        if lab.array.min() < 0 or lab.array.max() > 65535:
            raise HounsfieldError(f"{os.path.basename(p)} is not a label map (values outside 0-65535).")
        layers.append(lab.array.astype(np.uint16 if lab.array.max() > 255 else np.uint8))
    seg = Segmentation.for_volume(volume, name or os.path.basename(_split(path)[0]))
    if meta is not None:
        meta = dict(meta)
        meta["layers"] = [str(a.dtype) for a in layers]
        try:
            seg.set_meta(meta)
            numbers = [(s.number, s.layer) for s in seg.segments]
            if (len({n for n, _ in numbers}) != len(numbers)
                    or not all(0 < n < 65536 and 0 <= la < len(layers) for n, la in numbers)):
                raise ValueError("segment numbers or layers out of range")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HounsfieldError(f"{os.path.basename(side)} has an invalid segment list ({type(exc).__name__}); "
                                  "remove it to load the label map without names and colours.") from None
        for n, a in enumerate(layers):
            seg.layers[n] = a
        return seg
    labels = [int(v) for v in np.unique(layers[0]) if v]
    pairs = [(seg.add_segment(f"Label {lab}", number=lab), layers[0] == lab) for lab in labels]
    add_masks(seg, pairs)
    return seg
