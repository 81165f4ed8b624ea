"""The real CT volumes the denoiser is trained and evaluated on (numpy only; no torch).

Training: the thoracic CT ``chest-ct`` (512x512x141, 0.98 mm), the abdominal CT
``totalseg-examples/example_ct.nii.gz`` (3 mm) from ../shared/data, and the head CT of the Debian
package ``invesalius-examples`` (256x256x108, 0.96 mm), fetched with ``apt-get download`` and
unpacked into the cache folder (never into the repository); the chest and head CTs also
resampled in-plane to 1.5 mm pixels (so the network sees coarser grids, with noise simulated on
them, as well as native ones), and the three fine-pixel chest CTs of ``lung-nodule-ct`` (radiomics-lung1,
0.57 mm and radiomics-lung2, 0.63 mm, 5 mm slices, smooth-looking; the LIDC-IDRI-0002 slab, GE, 0.68 mm,
1.25 mm slices, 12 slices), which bring the sub-millimetre pixels and sharper kernels the others lack.

Held out, never trained on: ``ct-aorta/ct_cropped.nii.gz`` (a contrast-enhanced chest CT crop,
120x126x164, 1.5 mm).  ``refuse_held_out`` recognises it by file hash and by voxel content, so
neither a copy nor a conversion of it can slip into training.
"""

from __future__ import annotations

import hashlib
import os
import plistlib
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))
CACHE = Path(os.environ.get("HOUNSFIELD_DENOISE_CACHE", "/tmp/hounsfield-ct-denoising"))

HELD_OUT = "ct-aorta/ct_cropped.nii.gz"
HELD_OUT_FILE_SHA256 = "f776ecfa1326e7e21a8c30e5530f517c16f16a59a68fc06e8119cefc7c3b87a0"
HELD_OUT_VOXELS_SHA256 = "d1ba610b3798dfa2b40d2e010b9a18e55ee89728acf65d027b9d8b5a5cd55196"
TRAINING = ("chest-ct", "totalseg-examples/example_ct.nii.gz", "invesalius-examples",
            "chest-ct@1.5mm", "invesalius-examples@1.5mm",  # '@': resampled in-plane to that pixel size
            "lung-nodule-ct/radiomics-lung1/image.nrrd", "lung-nodule-ct/radiomics-lung2/image.nrrd",
            "lung-nodule-ct/lidc-idri-0002")
# sub-millimetre versions of two of them (train.py --fine-pixel): the head CT and the GE slab interpolated to
# 0.45 mm pixels, so the simulated noise has the texture of a 0.4-0.5 mm scan (a head at 0.43 mm was the
# image 1.2.0 did worst on); appended after TRAINING so the earlier volumes keep their simulation seeds
FINE_PIXEL = ("invesalius-examples@0.45mm", "lung-nodule-ct/lidc-idri-0002@0.45mm")
# single real CT slices from two more scanners and body regions (train.py --more-slices), from the pydicom-data
# package: a Siemens B30s neck slice (0.29 mm pixels, 1 mm) and a slice of the NIH Pancreas-CT collection
# (abdomen, 0.86 mm; TCIA, CC BY).  Left out on purpose: pydicom-data's 693_*.dcm (a CQ500 head slice:
# CC BY-NC-SA, non-commercial) and highdicom's ct_image.dcm (the same patient and image as pydicom's
# CT_small.dcm, a bench_denoise image).  Single slices are trained only as lone slices (as the plugin
# sees one) and give no monitoring slices.
MORE_SLICES = ("pydicom-data:bad_sequence.dcm", "pydicom-data:explicit_VR-UN.dcm")
# the unseen single-slice images of tests/benchmarks/bench_denoise.py (patient IDs): never trained on
BENCH_PATIENT_IDS = ("99000", "123456", "JXD191021006", "1CT1")


@dataclass
class CTVolume:
    name: str
    hu: np.ndarray  # int16 [k, j, i]
    pixel_mm: float
    slice_mm: float


class HeldOutError(ValueError):
    """Raised when the held-out evaluation volume is offered for training."""


def voxel_hash(array: np.ndarray) -> str:
    a = np.ascontiguousarray(np.asarray(array).astype(np.int16))
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def refuse_held_out(volume: CTVolume, path: Path | None = None) -> None:
    if path is not None and path.is_file() and file_hash(path) == HELD_OUT_FILE_SHA256:
        raise HeldOutError(f"{path} is the held-out evaluation CT; it must never be trained on.")
    if voxel_hash(volume.hu) == HELD_OUT_VOXELS_SHA256:
        raise HeldOutError(f"{volume.name} holds the voxels of the held-out evaluation CT; "
                           "it must never be trained on.")


def _from_viewer(path: Path, name: str) -> CTVolume:
    import viewer

    vol = viewer.load(path)
    hu = vol.real_values()
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    sp = vol.spacing
    return CTVolume(name, hu, float(sp[0]), float(sp[2]))


def fetch_invesalius(cache: Path = CACHE) -> Path:
    """The unpacked InVesalius head CT project folder (downloads the Debian package once)."""
    folder = cache / "invesalius"
    found = list(folder.glob("project/*/matrix.dat"))
    if found:
        return found[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    debs = list(folder.glob("invesalius-examples_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None:
            raise RuntimeError("apt-get is needed to fetch the Debian package invesalius-examples")
        subprocess.run(["apt-get", "download", "invesalius-examples"], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL)
        debs = list(folder.glob("invesalius-examples_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(folder / "pkg")], check=True)
    inv3 = next((folder / "pkg").rglob("Cranium.inv3"))
    with tarfile.open(inv3, "r:gz") as tar:
        tar.extractall(folder / "project", filter="data")
    return next(folder.glob("project/*/matrix.dat")).parent


def read_inv3(project: Path) -> CTVolume:
    """An InVesalius 3 project's image matrix (raw little-endian int16 plus a plist header)."""
    with open(project / "main.plist", "rb") as f:
        meta = plistlib.load(f)
    m = meta["matrix"]
    hu = np.fromfile(project / m["filename"], dtype=np.dtype(m["dtype"]).newbyteorder("<"))
    hu = hu.reshape(m["shape"]).astype(np.int16)
    sx, _sy, sz = (float(s) for s in meta["spacing"])
    # the project stores the slices as acquired (a direct coronal head scan): hu[k] is one CT slice
    return CTVolume("invesalius-examples (Cranium)", hu, sx, sz)


def resample_in_plane(vol: CTVolume, pixel_mm: float) -> CTVolume:
    """The volume on another in-plane grid, as a scanner or a pipeline reconstructing or resampling to
    other pixels would give (coarser: anti-aliased linear interpolation; finer: cubic); the slices stay
    as they are."""
    from skimage.transform import resize

    depth, rows, cols = vol.hu.shape
    factor = vol.pixel_mm / pixel_mm
    shape = (max(int(round(rows * factor)), 8), max(int(round(cols * factor)), 8))
    # finer pixels ('@0.45mm' of a 0.96 mm scan): cubic interpolation, as a scanner reconstructing the same
    # data on a finer grid would show it (smooth at the new pixel scale); the noise simulated on that grid
    # then has the sub-millimetre texture of a fine-pixel scan
    finer = factor > 1.0
    out = np.empty((depth, *shape), np.int16)
    for k in range(depth):
        out[k] = np.clip(np.rint(resize(vol.hu[k].astype(np.float32), shape, order=3 if finer else 1,
                                        anti_aliasing=not finer, preserve_range=True)), -1024, 3071)
    return CTVolume(f"{vol.name}@{pixel_mm:g}mm", out, pixel_mm, vol.slice_mm)


def load_training_volume(name: str) -> CTVolume:
    if "@" in name:
        base, _, size = name.partition("@")
        return resample_in_plane(load_training_volume(base), float(size.removesuffix("mm")))
    if name.startswith("pydicom-data:"):
        import pydicom
        from pydicom.data import get_testdata_file

        path = Path(get_testdata_file(name.partition(":")[2]))
        if str(pydicom.dcmread(path, stop_before_pixels=True).get("PatientID", "")) in BENCH_PATIENT_IDS:
            raise HeldOutError(f"{path} is a bench_denoise evaluation image; it must never be trained on.")
        vol = _from_viewer(path, name)
        refuse_held_out(vol, path)
        return vol
    if name == "invesalius-examples":
        vol = read_inv3(fetch_invesalius())
        refuse_held_out(vol)
        return vol
    path = DATA / name
    if not path.exists():
        raise FileNotFoundError(f"training data {path} is absent (set VIEWER_TEST_DATA)")
    if path.is_file() and file_hash(path) == HELD_OUT_FILE_SHA256:
        raise HeldOutError(f"{path} is the held-out evaluation CT; it must never be trained on.")
    vol = _from_viewer(path, name)
    refuse_held_out(vol, path)
    return vol


def load_held_out() -> CTVolume:
    return _from_viewer(DATA / HELD_OUT, HELD_OUT)
