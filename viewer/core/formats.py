"""NIfTI, NRRD and MetaImage through SimpleITK, converted to and from ``Volume``.

SimpleITK holds images in LPS; it converts NIfTI's RAS on read and write, so this file is the
file boundary DESIGN.md asks for and no other code ever sees RAS.  ITK cannot store a sheared
(gantry-tilted) grid, so such a volume is resampled onto its slice-normal grid before writing,
as dcm2niix does, and the caller is told.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import zlib

import numpy as np
import SimpleITK as sitk

from viewer.core.errors import HounsfieldError
from viewer.core.itk_stderr import itk_stderr_logged
from viewer.core.volume import SourceInfo, Volume, affine_from

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_volume_file(path) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def volume_from_sitk(image: sitk.Image, *, modality: str = "OT", path: str = "") -> Volume:
    if image.GetDimension() == 4 or image.GetNumberOfComponentsPerPixel() != 1:
        raise HounsfieldError(f"{os.path.basename(path) or 'The image'} is not a single-channel 3D volume.")
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    array = sitk.GetArrayFromImage(image)  # [k, j, i]
    affine = affine_from(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return Volume(array, affine, modality=modality, source=SourceInfo(path=path))


def sitk_from_volume(volume: Volume) -> sitk.Image:
    volume = orthogonalised(volume)
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(tuple(float(s) for s in volume.spacing))
    image.SetOrigin(tuple(float(o) for o in volume.origin))
    image.SetDirection(tuple(float(d) for d in volume.direction.ravel()))
    return image


def nifti_shortfall(path) -> int:
    """How many bytes of voxel data a NIfTI file (.nii, .nii.gz) lacks: 0 when it is whole (or is
    not a NIfTI-1/2 file this can parse).  ITK's NIfTI writer reports a full disk only on stderr
    ("NWAD: wrote only 0 of ... bytes") and leaves a truncated file, which its reader then loads
    without a word, the missing voxels filled in; so both ends check."""
    path = os.fspath(path)
    packed = path.lower().endswith(".gz")
    try:
        with (gzip.open if packed else open)(path, "rb") as f:
            head = f.read(540)
    except (OSError, EOFError, zlib.error):
        return 0  # unreadable: the reader says so itself
    expected = _nifti_size(head)
    if expected is None:
        return 0
    if not packed:
        return max(0, expected - os.path.getsize(path))
    with open(path, "rb") as raw:  # a gzip member ends with its size mod 2^32: the quick answer
        raw.seek(0, os.SEEK_END)
        if raw.tell() >= 18:
            raw.seek(-4, os.SEEK_END)
            if struct.unpack("<I", raw.read(4))[0] == expected % 2**32:
                return 0
    total = 0  # no match (truncated, or several members): decompress and count
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        pass
    return max(0, expected - total)


def _nifti_size(head: bytes) -> int | None:
    """Bytes a NIfTI-1 or NIfTI-2 file holds up to its last voxel, from its header."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            dim = struct.unpack(order + "8h", head[40:56])
            bitpix = struct.unpack(order + "h", head[72:74])[0]
            offset = int(struct.unpack(order + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            bitpix = struct.unpack(order + "h", head[14:16])[0]
            dim = struct.unpack(order + "8q", head[16:80])
            offset = struct.unpack(order + "q", head[168:176])[0]
            break
    else:
        return None
    if not 1 <= dim[0] <= 7 or bitpix <= 0 or any(d < 0 for d in dim[1:dim[0] + 1]):
        return None
    return max(offset, 348) + int(np.prod(dim[1:dim[0] + 1], dtype=np.int64)) * bitpix // 8


def _itk_reason(exc: Exception) -> str:
    """The last line of an ITK exception without its 'ITK ERROR: NiftiImageIO(0x55dac6fd2830): '."""
    line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^(sitk::)?(ITK )?ERROR:\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", line)[:100]


def read_volume(path) -> Volume:
    path = os.fspath(path)
    try:
        with itk_stderr_logged(path):  # the NIfTI library's '** ERROR: ...' lines: to the log, not the terminal
            image = sitk.ReadImage(path)
    except RuntimeError as exc:
        raise HounsfieldError(f"{os.path.basename(path)} could not be read as an image volume "
                              f"({_itk_reason(exc)}).") from exc
    if path.lower().endswith((".nii", ".nii.gz")) and (short := nifti_shortfall(path)):
        raise HounsfieldError(f"{os.path.basename(path)} is incomplete: {short} bytes of its voxels are missing "
                              f"(a copy or a write cut short).")
    vol = volume_from_sitk(image, path=path)
    lo = int(vol.array.min()) if vol.array.size and vol.array.dtype.kind == "i" else 0
    # Signed integers spanning air (about -1000, or the -2048/-3024 padding outside the scan
    # field) to bone are almost surely HU; MR magnitude images start at 0.
    if vol.array.dtype.kind == "i" and -3100 <= lo <= -900 and vol.array.max() > 200:
        vol.modality = "CT"
        vol.units = "HU"
        if vol.array.dtype != np.int16 and vol.array.min() >= -32768 and vol.array.max() <= 32767:
            vol.array = vol.array.astype(np.int16)
    return vol


def write_volume(volume: Volume, path) -> None:
    """Write ``volume``; a gantry-tilted one is resampled first and a note added to its warnings."""
    path = os.fspath(path)
    if not is_volume_file(path):
        raise HounsfieldError(f"{os.path.basename(path)}: choose a .nii, .nii.gz, .nrrd, .mha or .mhd file name.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):  # said plainly, not as ITK's 'NiftiImageIO(0x5637...): ERROR: nifti library failed'
        raise HounsfieldError(f"{os.path.basename(path)} could not be written: there is no folder {folder}.")
    written = orthogonalised(volume)
    image = sitk_from_volume(written)
    low = path.lower()
    suffix = next(s for s in VOLUME_SUFFIXES if low.endswith(s))
    # A detached header (.mhd, .nhdr) names its data file after itself: write those in place.
    tmp = path if suffix in (".mhd", ".nhdr") else path[:-len(suffix)] + ".partial" + suffix
    try:
        with itk_stderr_logged(path):  # on a full disk ITK prints '** ERROR: NWAD: ...'; we raise the sentence below
            sitk.WriteImage(image, tmp, useCompression=low.endswith((".gz", ".nrrd", ".mha")))
        if low.endswith((".nii", ".nii.gz")) and nifti_shortfall(tmp):
            raise OSError("it came out short: the disk may be full")
        if tmp != path:
            os.replace(tmp, path)
    except (RuntimeError, OSError) as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise HounsfieldError(f"{os.path.basename(path)} could not be written "
                              f"({_itk_reason(exc)}); check the folder and free space.") from exc
    if written is not volume:
        note = f"{os.path.basename(path)} was resampled onto a grid along the slice normal to remove the gantry tilt."
        if note not in volume.warnings:
            volume.warnings.append(note)


def is_sheared(affine: np.ndarray, tol: float = 1e-4) -> bool:
    m = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return not np.allclose(m.T @ m, np.eye(3), atol=tol)


def orthogonalised(volume: Volume) -> Volume:
    """Resample a sheared (gantry-tilted) volume onto the grid along its slice normal."""
    if not is_sheared(volume.affine):
        return volume
    from scipy import ndimage

    a = volume.affine[:3, :3]
    ci, cj, ck = a[:, 0], a[:, 1], a[:, 2]
    normal = np.cross(ci, cj)
    normal /= np.linalg.norm(normal)
    # k step = alpha*ci + beta*cj + gamma*normal
    alpha, beta, gamma = np.linalg.solve(np.column_stack([ci, cj, normal]), ck)
    out = np.empty_like(volume.array)
    fill = float(volume.array.min())
    for k in range(volume.shape[0]):
        ndimage.shift(volume.array[k], (k * beta, k * alpha), output=out[k], order=1, mode="constant", cval=fill)
    affine = volume.affine.copy()
    affine[:3, 2] = normal * gamma
    return Volume(out, affine, volume.modality, volume.units, volume.rescale, volume.source,
                  [*volume.warnings, "Resampled to remove gantry tilt."], volume.window)
