"""Pixel decoding across transfer syntaxes: real files and pydicom's (and pydicom-data's) test files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

import viewer
from tests import dicom_factory as F
from tests.conftest import data_path
from viewer.core.dicom.decode import read_native, read_pydicom
from viewer.core.dicom.header import read_header

LOSSLESS = {
    pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRBigEndian,
    pydicom.uid.RLELossless, pydicom.uid.JPEGLosslessSV1, pydicom.uid.JPEGLossless, pydicom.uid.JPEGLSLossless,
    pydicom.uid.JPEG2000Lossless, pydicom.uid.DeflatedExplicitVRLittleEndian,
}


def _transfer_syntax_files():
    folder = data_path("codecs", "transfer-syntaxes")
    return sorted(folder.glob("*.dcm"), key=lambda p: int(p.stem))


def test_nine_transfer_syntaxes_decode_to_identical_pixels():
    files = _transfer_syntax_files()
    assert len(files) == 9
    syntaxes = {}
    arrays = {}
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        syntaxes[f.name] = ds.file_meta.TransferSyntaxUID
        vol = viewer.load(f)
        assert vol.shape == (1, 384, 384) and vol.array.dtype == np.uint16 and vol.modality == "MR"
        arrays[f.name] = vol
    reference = next(v for n, v in arrays.items() if syntaxes[n] == pydicom.uid.ExplicitVRLittleEndian)
    assert len(set(syntaxes.values())) >= 6
    for name, vol in arrays.items():
        assert syntaxes[name] in LOSSLESS, f"{name}: {syntaxes[name].name} is not lossless"
        np.testing.assert_array_equal(vol.array, reference.array, err_msg=f"{name} ({syntaxes[name].name})")
        np.testing.assert_allclose(vol.affine, reference.affine)
    assert reference.array.max() > 100  # not an empty image


@pytest.mark.parametrize("index", range(9))
def test_each_transfer_syntax_equals_pydicom(index):
    f = _transfer_syntax_files()[index]
    vol = viewer.load(f)
    np.testing.assert_array_equal(vol.array[0], pydicom.dcmread(f).pixel_array)


def test_transfer_syntax_folder_splits_into_one_volume_per_file():
    # nine copies of the same slice at the same position: nothing to stack, nine volumes
    result = viewer.scan(data_path("codecs", "transfer-syntaxes"))
    assert sorted(len(s.frames) for s in result.image_series) == [1] * 9


def _expected(ds) -> np.ndarray:
    """What the loader should give: pydicom's pixels after the rescale rules, as [k, j, i]."""
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    if frames == 1:
        arr = arr[None]
    if spp == 3:
        return np.rint(arr[..., :3] @ np.array([0.299, 0.587, 0.114]))
    if ds.get("Modality") == "CT":
        return np.rint(arr.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1)
                       + float(ds.get("RescaleIntercept", 0) or 0))
    return arr


CASES = [
    # (file, what it exercises)
    ("CT_small.dcm", "explicit little endian CT"),
    ("MR_small.dcm", "explicit little endian MR"),
    ("MR_small_implicit.dcm", "implicit little endian"),
    ("MR_small_bigendian.dcm", "explicit big endian"),
    ("MR_small_expb.dcm", "explicit big endian"),
    ("MR_small_padded.dcm", "trailing padding after the pixel data"),
    ("MR_small_RLE.dcm", "RLE lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 lossless"),
    ("JPEGLSNearLossless_16.dcm", "JPEG-LS near lossless"),
    ("JPGExtended.dcm", "JPEG extended 12 bit"),
    ("JPEG2000.dcm", "JPEG 2000"),
    ("JPEG-LL.dcm", "JPEG lossless process 14"),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEG lossless SV1 8 bit"),
    ("SC_rgb_jpeg_dcmtk.dcm", "JPEG baseline YBR"),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "JPEG baseline YBR 4:2:2"),
    ("SC_rgb_jpeg_gdcm.dcm", "JPEG lossless RGB"),
    ("image_dfl.dcm", "deflated explicit little endian"),
    ("ExplVR_BigEnd.dcm", "big endian RGB"),
    ("693_J2KR.dcm", "JPEG 2000 lossless CT"),
    ("693_UNCI.dcm", "14-bit signed CT"),
    ("J2K_pixelrep_mismatch.dcm", "JPEG 2000 with a pixel representation mismatch"),
    ("bad_sequence.dcm", "JPEG lossless CT with a broken sequence"),
    ("MR2_J2KR.dcm", "JPEG 2000 MR with rescale"),
    ("emri_small.dcm", "multi-frame MR"),
    ("emri_small_RLE.dcm", "multi-frame RLE"),
    ("emri_small_big_endian.dcm", "multi-frame big endian"),
    ("emri_small_jpeg_ls_lossless.dcm", "multi-frame JPEG-LS"),
    ("emri_small_jpeg_2k_lossless.dcm", "multi-frame JPEG 2000"),
    ("SC_rgb_rle_2frame.dcm", "multi-frame RGB RLE"),
    ("SC_rgb_16bit.dcm", "16-bit RGB"),
    ("SC_rgb_rle_16bit.dcm", "16-bit RGB RLE"),
    ("SC_rgb_32bit_2frame.dcm", "32-bit RGB"),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage it tolerates
@pytest.mark.parametrize(("name", "what"), CASES, ids=[c[0] for c in CASES])
def test_pydicom_test_files_load_like_pydicom_decodes_them(name, what):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} ({what}) is not installed")
    ds = pydicom.dcmread(path)
    vol = viewer.load(path)
    expected = _expected(ds)
    assert vol.shape == expected.shape[:3], what
    if ds.get("Modality") == "CT":
        assert vol.array.dtype == np.int16 and vol.units == "HU", what
    elif int(ds.get("SamplesPerPixel", 1)) == 1:
        assert vol.array.dtype == ds.pixel_array.dtype.newbyteorder("="), what
    else:  # colour: luma in the stored sample width, never wrapped around
        assert vol.array.dtype.itemsize * 8 == ds.BitsAllocated, what
    np.testing.assert_array_equal(vol.array, expected, err_msg=what)


def test_ct_hu_from_compressed_and_uncompressed_copies_agree():
    a, b = get_testdata_file("693_UNCR.dcm"), get_testdata_file("693_J2KR.dcm")
    if a is None or b is None:
        pytest.skip("pydicom-data is not installed")
    va, vb = viewer.load(a), viewer.load(b)
    assert va.array.dtype == vb.array.dtype == np.int16
    np.testing.assert_array_equal(va.array, vb.array)
    np.testing.assert_allclose(va.affine, vb.affine)


def test_native_reader_masks_unused_high_bits_like_pydicom():
    path = get_testdata_file("MR-SIEMENS-DICOM-WithOverlays.dcm")  # 12 bits stored, overlays above
    if path is None:
        pytest.skip("pydicom-data is not installed")
    h = read_header(path)
    native = read_native(h)
    assert native is not None
    np.testing.assert_array_equal(native, pydicom.dcmread(path).pixel_array)


def test_native_and_pydicom_readers_agree_on_signed_14_bit(tmp_path):
    path = get_testdata_file("693_UNCI.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    h = read_header(path)
    np.testing.assert_array_equal(read_native(h), read_pydicom(h)[0])


def test_pydicom_path_on_chest_ct_ignores_the_malformed_private_tag(chest_ct_dir):
    path = sorted(chest_ct_dir.glob("*.dcm"))[5]
    h = read_header(str(path))
    np.testing.assert_array_equal(read_pydicom(h)[0], read_native(h))


def test_native_path_declines_what_it_cannot_read_in_place(tmp_path):
    # compressed, big endian, or pixel data followed by trailing padding: left to pydicom
    for name in ("MR_small_RLE.dcm", "MR_small_padded.dcm", "MR_small_bigendian.dcm", "CT_small.dcm"):
        assert read_native(read_header(get_testdata_file(name))) is None, name
    stored = F.phantom((2, 12, 10))
    ws = F.write_series(tmp_path, stored, F.axial(), transfer_syntax=pydicom.uid.ImplicitVRLittleEndian)
    np.testing.assert_array_equal(read_native(read_header(ws.paths[1])), stored[1])


def test_generated_rle_series_with_per_slice_rescale(tmp_path):
    stored = F.phantom((6, 24, 20))
    ws = F.write_series(tmp_path, stored, F.oblique(), transfer_syntax=F.RLELossless,
                        slope=[1, 2, 1, 2, 1, 1], intercept=[-1024, -2048, -1000, 0, 5, -1024])
    vol = viewer.load(tmp_path)
    np.testing.assert_array_equal(vol.array, ws.real(stored).astype(np.int16))


# ---------------------------------------------------------------------------------- corrupt codestreams


def _patched(tmp_path, name: str, out: str, *, marker: int | None = None, offset: int = 0, value: int = 0,
             rows: int | None = None, columns: int | None = None):
    """A copy of a transfer-syntax file with one byte of its codestream header, or its Rows/Columns, changed."""
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(data_path("codecs", "transfer-syntaxes", name))
    if marker is not None:
        frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
        frame[frame.find(bytes([0xFF, marker])) + 4 + offset] = value
        ds.PixelData = encapsulate([bytes(frame)])
    if rows is not None:
        ds.Rows, ds.Columns = rows, columns
    folder = tmp_path / out
    folder.mkdir()
    ds.save_as(folder / "x.dcm")
    return folder


# Each of these killed the process in GDCM before (segfault: JPEG; abort: JPEG-LS).
CRASHERS = [
    ("jpeg-precision-255", dict(name="5.dcm", marker=0xC3, value=255)),
    ("jpeg-precision-17", dict(name="6.dcm", marker=0xC3, value=17)),
    ("jpeg-ls-precision-17", dict(name="7.dcm", marker=0xF7, value=17)),
    ("jpeg-ls-rows-768", dict(name="8.dcm", rows=768, columns=384)),
    ("jpeg-ls-rows-65535", dict(name="7.dcm", rows=65535, columns=65535)),
]


def test_corrupt_codestreams_are_one_sentence_not_a_dead_process(tmp_path):
    import subprocess
    import sys

    folders = [str(_patched(tmp_path, out=case, **kw)) for case, kw in CRASHERS]
    child = (
        "import sys, viewer\n"
        "for folder in sys.argv[1:]:\n"
        "    try:\n"
        "        viewer.load(folder)\n"
        "        print('LOADED', folder)\n"
        "    except viewer.HounsfieldError as err:\n"
        "        print('ERROR', str(err))\n"
        "    sys.stdout.flush()\n"
    )
    run = subprocess.run([sys.executable, "-c", child, *folders], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 0, f"the process died (status {run.returncode}): {run.stderr[-2000:]}"
    lines = run.stdout.splitlines()
    assert len(lines) == len(CRASHERS), run.stdout
    for (case, _), line in zip(CRASHERS, lines):
        assert line.startswith("ERROR ") and "could not be decoded" in line, (case, line)
        assert line.endswith(".") and len(line) < 400, (case, line)
    assert "Traceback" not in run.stderr


def test_rle_decoder_panic_is_one_sentence(tmp_path):
    # pylibjpeg-rle panics (a Rust PanicException, a BaseException) when Rows disagrees with its segments
    folder = _patched(tmp_path, "4.dcm", "rle-rows", rows=383, columns=384)
    with pytest.raises(viewer.HounsfieldError) as err:
        viewer.load(folder)
    text = str(err.value)
    assert "\n" not in text and text.endswith(".") and "could not be decoded" in text


def test_guarded_turns_a_real_rust_panic_into_decode_failed_but_lets_interrupts_through():
    from rle.utils import decode_pixel_data

    from viewer.core.dicom.safe_decode import DecodeFailed, guarded

    ds = pydicom.dcmread(data_path("codecs", "transfer-syntaxes", "4.dcm"))
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    with pytest.raises(DecodeFailed, match="PanicException"):
        guarded(lambda: decode_pixel_data(frame, version=2, rows=383, columns=384, bits_allocated=16))

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guarded(interrupted)


def test_a_decoder_crash_costs_one_worker_process_and_the_next_file_decodes(tmp_path):
    from viewer.core.dicom.safe_decode import DecodeFailed, decode_file

    crasher = _patched(tmp_path, "5.dcm", "crash", marker=0xC3, value=255) / "x.dcm"
    good = data_path("codecs", "transfer-syntaxes", "5.dcm")
    with pytest.raises(DecodeFailed, match="crashed"):
        decode_file(str(crasher), check=False)  # past the codestream check: GDCM itself segfaults
    np.testing.assert_array_equal(decode_file(str(good)), pydicom.dcmread(good).pixel_array)


def test_compressed_files_are_decoded_outside_the_process_and_uncompressed_inside():
    import psutil

    def workers():
        return {p.pid for p in psutil.Process().children() if "safe_decode" in " ".join(p.cmdline())}

    before = workers()
    vol = viewer.load(data_path("codecs", "transfer-syntaxes", "1.dcm"))  # explicit little endian
    assert vol.array.max() > 100 and workers() == before  # read here: no decoder process started for it
    viewer.load(data_path("codecs", "transfer-syntaxes", "9.dcm"))  # JPEG 2000
    assert workers(), "JPEG 2000 was decoded without a decoder process"


def test_decoder_crashes_in_parallel_never_leave_a_request_waiting(tmp_path):
    # More requests than decoder processes, every process crashing: each request still gets its answer
    # (a crashed worker frees its slot for a fresh one; it used to leave the waiting requests stuck).
    from concurrent.futures import ThreadPoolExecutor, wait

    from viewer.core.dicom.safe_decode import _POOL_SIZE, DecodeFailed, decode_file

    crasher = str(_patched(tmp_path, "5.dcm", "crash", marker=0xC3, value=255) / "x.dcm")
    good = str(data_path("codecs", "transfer-syntaxes", "5.dcm"))
    pool = ThreadPoolExecutor(_POOL_SIZE * 3)
    futures = [pool.submit(decode_file, crasher, check=False) for _ in range(_POOL_SIZE * 3 - 1)]
    futures.append(pool.submit(decode_file, good))
    _, pending = wait(futures, timeout=300)
    pool.shutdown(wait=not pending, cancel_futures=True)
    assert not pending, f"{len(pending)} of {len(futures)} requests never got an answer"
    for fut in futures[:-1]:
        assert isinstance(fut.exception(), DecodeFailed) and "crashed" in str(fut.exception())
    np.testing.assert_array_equal(futures[-1].result(), pydicom.dcmread(good).pixel_array)


@pytest.mark.parametrize(("case", "kw"), [
    ("rle-panic", dict(name="4.dcm", rows=383, columns=384)),
    ("jpeg-segfault", dict(name="5.dcm", marker=0xC3, value=255)),
])
def test_cli_convert_on_a_corrupt_codestream_exits_2_with_one_line(tmp_path, case, kw):
    # the RLE panic printed two tracebacks; the JPEG precision byte killed the command with a segfault
    import subprocess
    import sys

    folder = _patched(tmp_path, out=case, **kw)
    run = subprocess.run([sys.executable, "-m", "viewer.cli", "convert", str(folder), str(tmp_path / "out.nii.gz")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, (run.returncode, run.stderr[-1500:])
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not be decoded" in lines[0], run.stderr[-1500:]
    assert "Traceback" not in run.stderr and "panicked" not in run.stderr


def test_decoder_processes_start_from_any_working_folder(tmp_path):
    # "python -m" looks in the working folder first: a folder holding another "viewer" package made every
    # decoder process fail at start, and every compressed slice "crash"
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "viewer").mkdir()
    (tmp_path / "viewer" / "__init__.py").write_text("raise SystemExit('not the viewer')\n")
    child = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import viewer\n"
             "vol = viewer.load(sys.argv[1]); print('LOADED', vol.shape, vol.warnings)\n")
    run = subprocess.run([sys.executable, "-c", child, str(data_path("codecs", "transfer-syntaxes", "9.dcm"))],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("LOADED (1, 384, 384) []"), (run.stdout, run.stderr[-1500:])


def test_a_decoder_process_killed_while_idle_is_replaced_without_failing_a_file():
    import psutil

    from viewer.core.dicom.safe_decode import decode_file

    good = str(data_path("codecs", "transfer-syntaxes", "9.dcm"))
    expected = pydicom.dcmread(good).pixel_array
    np.testing.assert_array_equal(decode_file(good), expected)  # the pool is up, its workers idle
    workers = [p for p in psutil.Process().children() if "safe_decode" in " ".join(p.cmdline())]
    assert workers
    for p in workers:
        p.kill()  # the out-of-memory killer, or a user with kill(1)
    psutil.wait_procs(workers, timeout=30)
    np.testing.assert_array_equal(decode_file(good), expected)


def test_decoder_memory_cap_stops_a_runaway_allocation_and_is_lifted_after():
    import subprocess
    import sys

    # what a decoder sent allocating by a corrupt codestream meets in the decoder process
    child = ("import numpy as np\n"
             "from viewer.core.dicom.safe_decode import _memory_cap, _describe\n"
             "with _memory_cap(256 << 20):\n"
             "    np.ones(64 << 20, np.uint8)  # within the allowance\n"
             "    try:\n"
             "        np.ones(3 << 30, np.uint8)\n"
             "        print('NOT CAPPED')\n"
             "    except MemoryError as exc:\n"
             "        print('CAPPED', _describe(exc))\n"
             "a = np.ones(1 << 30, np.uint8)\n"
             "print('LIFTED', a.nbytes)\n")
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-1500:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("CAPPED decoding it needed far more memory") and lines[1] == f"LIFTED {1 << 30}", lines
