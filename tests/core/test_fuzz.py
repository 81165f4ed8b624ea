"""Fuzzing the reader with mutated real files: no crash, hang or non-sentence error, whatever the file.

A seeded corpus of several hundred cases is made from real files (the shared codec and
multi-frame files, a few chest CT slices, the DICOM objects, pydicom's test files): header
values mutated (NumberOfFrames, Rows, Columns, BitsAllocated, PixelRepresentation,
SamplesPerPixel, positions, spacing, orientation, rescale, transfer syntax, lengths), bytes
flipped in the codestream and the pixel data, files cut short.  Each case is scanned and loaded
through the public API (``viewer.scan`` + ``viewer.load`` on its own folder) in a child process
that takes many cases in turn: a crash (a signal), a hang (a timeout) or a traceback on stderr
is detected there and the child restarted, not suffered by the test run.

Every case must load, or raise ``viewer.HounsfieldError`` whose text is one sentence (no line
break, under 300 characters once the case's folder is left out, ending with a period).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.conftest import DATA, REPO

SEED = 20261204
CASE_TIMEOUT_S = 45.0  # a decoder stuck in a loop is stopped by safe_decode after 30 s: this is a real hang
CHILD_MEMORY_LIMIT = 4 << 30  # address space of the child (and its decoder processes): 4 GB

# ---------------------------------------------------------------------------------------- seeds

_SHARED_SEEDS = [
    *[(f"ts-{n}", [f"codecs/transfer-syntaxes/{n}.dcm"]) for n in range(1, 10)],
    ("siemens-xa10", ["codecs/enhanced-multiframe/siemens-xa10-6_1.dcm"]),
    ("philips-fmap", ["codecs/enhanced-multiframe/philips-fmap.dcm"]),
    ("chest-ct", [f"chest-ct/00-slice{k:03d}.dcm" for k in (70, 71, 72)]),
    ("liver-ct", "dicom-objects/dcmqi-liver/ct-3slice"),
    ("highdicom-ct-seg", ["dicom-objects/highdicom/ct_image.dcm", "dicom-objects/highdicom/seg_image_ct_binary.dcm"]),
    ("dcmqi-seg-sr", ["dicom-objects/dcmqi-sr-example/seg.dcm", "dicom-objects/dcmqi-sr-example/sr.dcm"]),
    ("rt-ct", ["dicom-objects/dicompyler-rt/ct.0.dcm"]),
]
_PYDICOM_SEEDS = [
    "CT_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "image_dfl.dcm",
    "emri_small.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm",
    "JPGExtended.dcm", "JPEG2000.dcm", "JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_rle_2frame.dcm", "rtdose.dcm", "693_J2KR.dcm",
]


def _seeds() -> list[tuple[str, list[Path]]]:
    out = []
    for name, files in _SHARED_SEEDS:
        if isinstance(files, str):
            folder = DATA / files
            paths = sorted(folder.iterdir()) if folder.is_dir() else []
        else:
            paths = [DATA / f for f in files]
        if paths and all(p.is_file() for p in paths):
            out.append((name, paths))
    for name in _PYDICOM_SEEDS:
        path = get_testdata_file(name)
        if path is not None:
            out.append((name.removesuffix(".dcm"), [Path(path)]))
    return out


# ---------------------------------------------------------------------------------------- mutations
# Header mutations change one dataset (pydicom writes what it is given: validation is off while
# the corpus is written); byte mutations change the written file.


def _fg_items(ds):
    """Datasets where geometry lives: the dataset itself, or its functional-group items."""
    items = [ds]
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(seq) or []:
            for group in ("PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
                          "PixelValueTransformationSequence"):
                for sub in item.get(group) or []:
                    items.append(sub)
    return items


def _raw(ds, keyword: str, value, encoding=(False, True)) -> None:
    """Set a text value (IS, DS...) as raw bytes: pydicom would refuse "abc" or "NaN" in a DS or IS."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement

    text = "\\".join(value) if isinstance(value, (list, tuple)) else str(value)
    data = text.encode("latin-1")
    data += b" " * (len(data) & 1)
    tag = pydicom.tag.Tag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(data), data, 0, *encoding)


def _set_everywhere(ds, keyword: str, value, rng) -> None:
    encoding = ds.original_encoding if ds.original_encoding[0] is not None else (False, True)
    targets = [d for d in _fg_items(ds) if keyword in d] or [ds]
    for d in (targets if rng.random() < 0.5 else [targets[int(rng.integers(len(targets)))]]):
        _raw(d, keyword, value, encoding)


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def _frames_huge(ds, rng):
    ds.NumberOfFrames = 2147483647


def _frames_other(ds, rng):
    _set_everywhere(ds, "NumberOfFrames", _pick(rng, ["0", "-1", "2", "3", "abc", "65536", "1e9", "999999"]), rng)


def _rows(ds, rng):
    r = int(ds.get("Rows", 16) or 16)
    ds.Rows = _pick(rng, [0, 1, 65535, r + 1, r - 1, r * 2, 32768])


def _columns(ds, rng):
    c = int(ds.get("Columns", 16) or 16)
    ds.Columns = _pick(rng, [0, 1, 65535, c + 1, c - 1, c * 2, 32768])


def _rows_columns(ds, rng):
    ds.Rows, ds.Columns = _pick(rng, [(65535, 65535), (65535, 1), (1, 65535), (4096, 4096), (0, 0)])


def _bits_allocated(ds, rng):
    ds.BitsAllocated = _pick(rng, [0, 1, 7, 12, 24, 32, 64, 255])


def _bits_stored(ds, rng):
    ds.BitsStored = _pick(rng, [0, 1, 17, 33, 255])
    if rng.random() < 0.5:
        ds.HighBit = _pick(rng, [0, 31, 255])


def _pixel_representation(ds, rng):
    ds.PixelRepresentation = _pick(rng, [1, 2, 255, 0])


def _samples(ds, rng):
    ds.SamplesPerPixel = _pick(rng, [0, 2, 3, 4, 255])
    if rng.random() < 0.5:
        ds.PlanarConfiguration = _pick(rng, [0, 1, 7])


def _photometric(ds, rng):
    ds.PhotometricInterpretation = _pick(rng, ["YBR_FULL_422", "PALETTE COLOR", "", "RGB", "MONOCHROME1", "XYZ"])


def _position(ds, rng):
    value = _pick(rng, [["NaN", "0", "0"], ["inf", "-inf", "0"], ["1e308", "1e308", "-1e308"], ["abc", "1", "2"],
                        ["1", "2"], ["1", "2", "3", "4"], ["", "", ""]])
    _set_everywhere(ds, "ImagePositionPatient", value, rng)


def _position_missing(ds, rng):
    for d in _fg_items(ds):
        if "ImagePositionPatient" in d:
            del d.ImagePositionPatient


def _spacing(ds, rng):
    value = _pick(rng, [["0", "0"], ["NaN", "1"], ["-1", "-1"], ["inf", "1"], ["0"], ["1e-30", "1e-30"], ["abc", "x"]])
    _set_everywhere(ds, "PixelSpacing", value, rng)


def _orientation(ds, rng):
    value = _pick(rng, [["1", "0", "0", "1", "0", "0"], ["0", "0", "0", "0", "0", "0"],
                        ["NaN", "0", "0", "0", "1", "0"], ["1", "0", "0", "0", "1"], ["inf", "0", "0", "0", "1", "0"],
                        ["1", "0", "0", "0", "0.5", "0.5"], ["a", "b", "c", "d", "e", "f"]])
    _set_everywhere(ds, "ImageOrientationPatient", value, rng)


def _rescale(ds, rng):
    _set_everywhere(ds, "RescaleSlope", _pick(rng, ["0", "NaN", "1e300", "-1", "inf", "abc"]), rng)
    if rng.random() < 0.5:
        _set_everywhere(ds, "RescaleIntercept", _pick(rng, ["NaN", "1e300", "-inf"]), rng)


def _window(ds, rng):
    center, width = _pick(rng, [("NaN", "NaN"), ("0", "0"), ("1e308", "-1"), ("a", "b")])
    _set_everywhere(ds, "WindowCenter", center, rng)
    _set_everywhere(ds, "WindowWidth", width, rng)


def _thickness(ds, rng):
    _set_everywhere(ds, "SliceThickness", _pick(rng, ["0", "NaN", "-2", "inf"]), rng)
    if rng.random() < 0.5:
        _set_everywhere(ds, "SpacingBetweenSlices", _pick(rng, ["0", "NaN", "-1e308"]), rng)


def _transfer_syntax(ds, rng):
    u = pydicom.uid
    ds.file_meta.TransferSyntaxUID = _pick(rng, [u.ExplicitVRLittleEndian, u.RLELossless, u.JPEGBaseline8Bit,
                                                 u.JPEGLSLossless, u.JPEG2000Lossless, u.ExplicitVRBigEndian,
                                                 u.JPEGLosslessSV1, "1.2.3.4"])


def _no_pixels(ds, rng):
    for name in ("PixelData", "Rows") if rng.random() < 0.5 else ("PixelData",):
        if name in ds:
            delattr(ds, name)


def _sop_class(ds, rng):
    ds.SOPClassUID = _pick(rng, ["1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.66.4",
                                 "1.2.840.10008.5.1.4.1.1.4", "", "1.2.3"])


def _functional_groups(ds, rng):
    choice = int(rng.integers(3))
    if choice == 0 and "PerFrameFunctionalGroupsSequence" in ds:
        del ds.PerFrameFunctionalGroupsSequence
    elif choice == 1 and ds.get("PerFrameFunctionalGroupsSequence"):
        seq = ds.PerFrameFunctionalGroupsSequence
        del seq[len(seq) // 2:]
    else:
        ds.SharedFunctionalGroupsSequence = []


def _series_uid(ds, rng):
    ds.SeriesInstanceUID = _pick(rng, ["", "1.2", "../../etc", "x" * 64])
    if rng.random() < 0.5:
        ds.Modality = _pick(rng, ["SEG", "SR", "", "CT"])


HEADER_MUTATIONS = {
    f.__name__.lstrip("_"): f for f in (
        _frames_huge, _frames_other, _rows, _columns, _rows_columns, _bits_allocated, _bits_stored,
        _pixel_representation, _samples, _photometric, _position, _position_missing, _spacing, _orientation,
        _rescale, _window, _thickness, _transfer_syntax, _no_pixels, _sop_class, _functional_groups, _series_uid)
}


def _pixel_start(data: bytes) -> int | None:
    i = max(data.rfind(b"\xe0\x7f\x10\x00"), data.rfind(b"\x7f\xe0\x00\x10"))
    return i if i >= 0 else None


def _truncate(data: bytes, rng) -> bytes:
    return data[:int(len(data) * rng.uniform(0.05, 0.999))]


def _truncate_pixels(data: bytes, rng) -> bytes:
    start = _pixel_start(data) or len(data) // 2
    return data[:int(rng.integers(start, len(data)))]


def _flip_pixels(data: bytes, rng) -> bytes:
    start = _pixel_start(data) or len(data) // 2
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 40))):
        out[int(rng.integers(start, len(out)))] = int(rng.integers(256))
    return bytes(out)


def _flip_codestream_header(data: bytes, rng) -> bytes:
    """Bytes just after the pixel data tag: its length, the offset table, the first fragment's header
    (JPEG SOF, JPEG-LS SOF55, J2K SIZ, RLE segment table)."""
    start = _pixel_start(data)
    if start is None:
        return _flip_pixels(data, rng)
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        i = start + 4 + int(rng.integers(0, 120))
        if i < len(out):
            out[i] = int(rng.integers(256)) if rng.random() < 0.7 else _pick(rng, [0, 0xFF, 0x80, 17])
    return bytes(out)


def _flip_header(data: bytes, rng) -> bytes:
    end = _pixel_start(data) or len(data)
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 8))):
        out[int(rng.integers(132, max(133, end)))] = int(rng.integers(256))
    return bytes(out)


_LENGTH_TAGS = [b"\x20\x00\x32\x00", b"\x28\x00\x30\x00", b"\x20\x00\x37\x00", b"\x28\x00\x10\x00",
                b"\x28\x00\x08\x00", b"\x08\x00\x16\x00", b"\x00\x52\x30\x92", b"\x20\x00\x0e\x00",
                b"\xe0\x7f\x10\x00"]


def _length(data: bytes, rng) -> bytes:
    """A corrupt length field on one element (positions, spacing, orientation, rows, frames, the
    per-frame sequence, the pixel data)."""
    found = [i for i in (data.find(t) for t in _LENGTH_TAGS) if i > 0]
    if not found:
        return _flip_header(data, rng)
    i = _pick(rng, found)
    out = bytearray(data)
    vr = bytes(out[i + 4:i + 6])
    if vr.isalpha() and vr.isupper():  # explicit VR
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF"):
            out[i + 8:i + 12] = int(_pick(rng, [0xFFFFFFFF, 0x7FFFFFFF, 3, 1, len(data)])).to_bytes(4, "little")
        else:
            out[i + 6:i + 8] = int(_pick(rng, [0xFFFF, 0, 1, 6001, 255])).to_bytes(2, "little")
    else:
        out[i + 4:i + 8] = int(_pick(rng, [0xFFFFFFFF, 0x7FFFFFFF, 3, len(data)])).to_bytes(4, "little")
    return bytes(out)


BYTE_MUTATIONS = {
    f.__name__.lstrip("_"): f for f in (
        _truncate, _truncate_pixels, _flip_pixels, _flip_codestream_header, _flip_header, _length)
}
ALL_KINDS = [*HEADER_MUTATIONS, *BYTE_MUTATIONS]


def make_corpus(root: Path, per_seed: int = 24) -> list[dict]:
    """Write the cases, one folder each; return their descriptions (seed, file, mutations)."""
    rng = np.random.default_rng(SEED)
    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = pydicom.config.settings.writing_validation_mode, pydicom.config.convert_wrong_length_to_UN
        pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
        pydicom.config.convert_wrong_length_to_UN = True  # the chest CT's malformed private tag, written back
        try:
            for seed_name, paths in _seeds():
                kinds = list(rng.permutation(ALL_KINDS))
                for kind in (kinds * 2)[:per_seed]:
                    extra = [str(_pick(rng, ALL_KINDS))] if rng.random() < 0.25 else []
                    case = {"id": len(cases), "seed": seed_name, "mutations": [str(kind), *extra]}
                    folder = root / f"{len(cases):04d}"
                    folder.mkdir()
                    victim = int(rng.integers(len(paths)))
                    for n, src in enumerate(paths):
                        dst = folder / f"{n:02d}.dcm"
                        if n != victim:
                            shutil.copyfile(src, dst)
                            continue
                        case["file"] = str(src)
                        if not _mutate(src, dst, case["mutations"], rng):
                            shutil.rmtree(folder)
                            break
                    else:
                        case["folder"] = str(folder)
                        cases.append(case)
        finally:
            pydicom.config.settings.writing_validation_mode, pydicom.config.convert_wrong_length_to_UN = old
    return cases


def _mutate(src: Path, dst: Path, kinds: list[str], rng) -> bool:
    header = [k for k in kinds if k in HEADER_MUTATIONS]
    if header:
        ds = pydicom.dcmread(src, force=True)
        for k in header:
            HEADER_MUTATIONS[k](ds, rng)
        try:
            ds.save_as(dst, enforce_file_format=False)
        except Exception:  # a value the VR cannot encode (Rows 65536): not a case
            return False
    else:
        shutil.copyfile(src, dst)
    data = dst.read_bytes()
    for k in kinds:
        if k in BYTE_MUTATIONS:
            data = BYTE_MUTATIONS[k](data, rng)
    dst.write_bytes(data)
    return True


# ---------------------------------------------------------------------------------------- the child

CHILD = r"""
import json, os, resource, sys, tempfile, traceback
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
import viewer
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
for line in sys.stdin:
    folder = line.strip()
    err = tempfile.TemporaryFile()
    saved = os.dup(2)
    os.dup2(err.fileno(), 2)
    os.dup2(err.fileno(), 1)
    reply = {}
    try:
        result = viewer.scan(folder)
        reply["scan_errors"] = list(result.errors)
        vol = viewer.load(folder)
        reply.update(outcome="loaded", shape=list(vol.shape), warnings=list(vol.warnings))
    except viewer.HounsfieldError as exc:
        reply.update(outcome="error", message=str(exc))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        reply.update(outcome="exception", message=f"{type(exc).__name__}: {exc}"[:500],
                     traceback=traceback.format_exc()[-3000:])
    sys.stderr.flush()
    sys.stdout.flush()
    os.dup2(saved, 2)
    os.dup2(saved, 1)
    os.close(saved)
    err.seek(0)
    reply["stderr"] = err.read()[-3000:].decode("utf-8", "replace")
    err.close()
    out.write(json.dumps(reply) + "\n")
    out.flush()
"""


class Child:
    """The process that loads cases one after another; restarted after a crash or a hang."""

    def __init__(self, env: dict):
        self.env = env
        self.proc = None

    def start(self) -> None:
        import tempfile

        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: nothing the child writes can block it
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(CHILD_MEMORY_LIMIT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, env=self.env, cwd=REPO, start_new_session=True)
        self.buf = b""

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the child and its decoder processes
        except ProcessLookupError:
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            f.close()
        self.proc = None

    def run(self, folder: str) -> dict:
        if self.proc is None:
            self.start()
        self.proc.stdin.write(folder.encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + CASE_TIMEOUT_S
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:
                self.stop()
                return {"outcome": "hang", "message": f"no answer within {CASE_TIMEOUT_S:.0f} s"}
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self.proc.wait()
                self.stderr.seek(0)
                stderr = self.stderr.read()[-3000:].decode("utf-8", "replace")
                self.stop()
                return {"outcome": "crash", "message": f"the child died with status {code}", "stderr": stderr}
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


# ---------------------------------------------------------------------------------------- judging

_BAD_STDERR = ("Traceback", "panicked at", "Fatal Python error", "terminate called", "Segmentation fault",
               "core dumped")


def judge(case: dict, reply: dict) -> str | None:
    """Why the case fails, or None when it passes."""
    outcome = reply["outcome"]
    if outcome in ("hang", "crash", "exception"):
        return f"{outcome}: {reply.get('message')}"
    stderr = reply.get("stderr", "")
    bad = [w for w in _BAD_STDERR if w in stderr]
    if bad:
        return f"stderr shows {bad[0]!r}: {stderr[-300:]!r}"
    texts = list(reply.get("scan_errors", [])) + list(reply.get("warnings", []))
    if outcome == "error":
        text = reply["message"].replace(case["folder"], "<folder>")
        if "\n" in text or not text.endswith(".") or len(text) >= 300:
            return f"not one sentence ({len(text)} characters): {text[:400]!r}"
    for t in texts:
        if "\n" in t or len(t.replace(case["folder"], "")) >= 600:
            return f"a warning or scan error is not one line: {t[:400]!r}"
    return None


def run_corpus(cases: list[dict], tmp: Path) -> list[tuple[dict, dict, str]]:
    env = dict(os.environ, HOUNSFIELD_DATA_DIR=str(tmp / "user-data"), HOUNSFIELD_LOG_DIR=str(tmp / "user-log"),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    child = Child(env)
    failures = []
    try:
        for case in cases:
            reply = child.run(case["folder"])
            case["outcome"] = reply["outcome"]
            why = judge(case, reply)
            if why is not None:
                failures.append((case, reply, why))
    finally:
        child.stop()
    return failures


def describe(case: dict, reply: dict, why: str) -> str:
    file = case["file"]
    where = os.path.relpath(file, DATA) if file.startswith(str(DATA)) else os.path.basename(file)
    return f"case {case['id']} ({case['seed']}: {where}, {'+'.join(case['mutations'])}): {why}"


def test_mutated_real_files_never_crash_hang_or_raise_anything_but_a_sentence(tmp_path):
    if not (DATA / "codecs").is_dir():
        pytest.skip(f"real test data {DATA} is absent (set VIEWER_TEST_DATA to the shared data folder)")
    corpus = tmp_path / "cases"
    corpus.mkdir()
    cases = make_corpus(corpus)
    assert len(cases) >= 300, len(cases)
    failures = run_corpus(cases, tmp_path)
    outcomes = {k: sum(c.get("outcome") == k for c in cases) for k in ("loaded", "error")}
    # the corpus must exercise both paths: files that still load and files refused in a sentence
    assert outcomes["loaded"] > 50 and outcomes["error"] > 50, outcomes
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(
        describe(*f) for f in failures[:40])
