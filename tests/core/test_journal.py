"""The crash journal (viewer.core.journal): one atomic record per edit, torn tails dropped, a fresh
journal after a restore, real kills inside an edit, and journal paths that stay inside their folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO
from viewer.core import journal
from viewer.core.edits import Editor
from viewer.core.segmentation import Segmentation
from viewer.core.volume import Volume, affine_from
from viewer.paths import data_dir


def make():
    """A small CT-like volume (a bright block for the range tools) and an empty segmentation."""
    a = np.full((12, 40, 40), -800, np.int16)
    a[3:9, 10:30, 8:32] = 60
    vol = Volume(a, affine_from((1.0, 1.0, 2.0), (0, 0, 0), np.eye(3)), "CT", "HU")
    seg = Segmentation.for_volume(vol, "Session", uid="session")
    seg.series_uid = "1.2.840.99.1"
    return vol, seg


def _stroke(ed, seg, vol, points, layer_seg, erase=False):
    ed.begin("Brush")
    try:
        for p, q in zip(points, points[1:]):
            ed.brush(layer_seg(seg), vol.index_to_lps(p), vol.index_to_lps(q), radius_mm=2.5, normal=[0, 0, 1],
                     erase=erase)
    finally:
        ed.end()


def _by(name):
    return lambda seg: seg.by_name(name)


# One long editing session: every kind of step, with undo and redo of the ones that change the
# segment table (add, remove), a segment in a second layer and a layer widened to uint16.
OPS = [
    ("add Tumor", lambda ed, seg, vol: ed.add_segment("Tumor")),
    ("stroke", lambda ed, seg, vol: _stroke(ed, seg, vol, [(10, 12, 4), (20, 14, 4), (28, 20, 4)], _by("Tumor"))),
    ("add Edema (new layer)", lambda ed, seg, vol: ed.add_segment("Edema", layer="new")),
    ("sphere", lambda ed, seg, vol: ed.brush(seg.by_name("Edema"), vol.index_to_lps([20, 20, 5]), radius_mm=5)),
    ("erase stroke", lambda ed, seg, vol: _stroke(ed, seg, vol, [(14, 12, 4), (18, 14, 4)], _by("Tumor"), True)),
    ("undo", lambda ed, seg, vol: ed.undo()),
    ("redo", lambda ed, seg, vol: ed.redo()),
    ("rename (no editor)", lambda ed, seg, vol: seg.update_segment(seg.by_name("Edema"), name="Oedema",
                                                                   color=(1, 2, 3))),
    ("flood fill", lambda ed, seg, vol: ed.flood_fill(seg.by_name("Tumor"), vol.index_to_lps([20, 20, 6]),
                                                      hu_range=(0, 100), normal=[0, 0, 1])),
    ("add Necrosis", lambda ed, seg, vol: ed.add_segment("Necrosis")),
    ("lasso", lambda ed, seg, vol: ed.polygon(seg.by_name("Necrosis"), [vol.index_to_lps(p) for p in
                                              [(12, 12, 7), (24, 12, 7), (24, 26, 7), (12, 26, 7)]], [0, 0, 1])),
    ("draw slice 2", lambda ed, seg, vol: _stroke(ed, seg, vol, [(15, 15, 2), (18, 18, 2)], _by("Necrosis"))),
    ("fill between", lambda ed, seg, vol: ed.fill_between_slices(seg.by_name("Necrosis"))),
    ("remove Tumor", lambda ed, seg, vol: ed.remove_segment(seg.by_name("Tumor"))),
    ("undo remove", lambda ed, seg, vol: ed.undo()),
    ("redo remove", lambda ed, seg, vol: ed.redo()),
    ("undo remove again", lambda ed, seg, vol: ed.undo()),
    ("add segment 300 (uint16)", lambda ed, seg, vol: ed.add_segment("Wide", number=300)),
    ("paint 300", lambda ed, seg, vol: ed.brush(seg.by_name("Wide"), vol.index_to_lps([30, 30, 9]), radius_mm=3)),
    ("union", lambda ed, seg, vol: ed.logical(seg.by_name("Tumor"), "union", seg.by_name("Wide"))),
    ("undo union", lambda ed, seg, vol: ed.undo()),
    ("undo paint 300", lambda ed, seg, vol: ed.undo()),
    ("undo add 300", lambda ed, seg, vol: ed.undo()),
    ("smooth", lambda ed, seg, vol: ed.smooth(seg.by_name("Necrosis"), "median", 1.0)),
    ("islands", lambda ed, seg, vol: ed.islands(seg.by_name("Tumor"), keep_largest=True)),
    ("remove Oedema", lambda ed, seg, vol: ed.remove_segment(seg.by_name("Oedema"))),
    ("undo remove Oedema", lambda ed, seg, vol: ed.undo()),
    ("remove Necrosis", lambda ed, seg, vol: ed.remove_segment(seg.by_name("Necrosis"))),
    ("final stroke", lambda ed, seg, vol: _stroke(ed, seg, vol, [(5, 30, 10), (35, 30, 10)], _by("Tumor"))),
]


def state(seg: Segmentation):
    return [a.copy() for a in seg.layers], seg.meta()


def same(seg: Segmentation, expected) -> bool:
    layers, meta = expected
    return (len(seg.layers) == len(layers) and all(a.dtype == b.dtype and np.array_equal(a, b)
                                                    for a, b in zip(seg.layers, layers)) and seg.meta() == meta)


def consistent(seg: Segmentation) -> bool:
    """Every labelled voxel belongs to a segment of its layer."""
    for n, layer in enumerate(seg.layers):
        numbers = {s.number for s in seg.segments if s.layer == n}
        if not set(np.unique(layer).tolist()) - {0} <= numbers:
            return False
    return True


def run_session(path):
    """Run OPS with a journal at ``path``; the file's size and the state after the snapshot and after
    every op."""
    vol, seg = make()
    ed = Editor(seg, vol)
    j = journal.Journal(seg, path=str(path), editor=ed)
    marks = [(os.path.getsize(path), state(seg), "snapshot")]
    for name, op in OPS:
        op(ed, seg, vol)
        marks.append((os.path.getsize(path), state(seg), name))
    return j, marks


def _replayed(data: bytes, tmp_path) -> Segmentation:
    p = tmp_path / "cut.hjournal"
    p.write_bytes(data)
    return journal.replay(str(p))


def test_every_record_boundary_and_every_torn_record_replays_to_the_state_the_session_had(tmp_path):
    path = tmp_path / "session.hjournal"
    j, marks = run_session(path)
    data = path.read_bytes()
    sizes = [m[0] for m in marks]
    assert sizes == sorted(sizes) and len(set(sizes)) > 25  # nearly every op wrote a record
    # one record per op: the ops that changed something each added exactly one whole record
    spans, good = journal._scan(data)
    assert good == len(data) and len(spans) == len(set(sizes))
    assert [end for _, end in spans] == sorted(set(sizes))
    checked = 0
    for n, (size, expected, name) in enumerate(marks):
        nxt = next((m[0] for m in marks[n + 1:] if m[0] > size), None)
        cuts = {size}
        if nxt is not None:  # inside the next record: its frame, its body, its last byte
            cuts |= {size + 1, size + 4, size + 8, size + 9, (size + nxt) // 2, nxt - 1}
        for cut in sorted(cuts):
            seg = _replayed(data[:cut], tmp_path)
            assert same(seg, expected), f"cut at {cut} (after {name!r})"
            assert consistent(seg)
            checked += 1
        if nxt is not None:  # a damaged byte inside the next record (same length): it and all after are dropped
            bad = bytearray(data)
            bad[(size + nxt) // 2] ^= 0x5A
            assert same(_replayed(bytes(bad), tmp_path), expected), f"damaged record after {name!r}"
    assert checked > 150
    j.close()


def test_after_a_restore_the_edits_made_then_survive_the_next_restore(tmp_path):
    """A journal cut inside a record is restored; the edits made after the restore are kept by the
    next restore (they used to be appended after the damaged record, and lost)."""
    path = tmp_path / "session.hjournal"
    j, marks = run_session(path)
    j.close()
    size, expected, name = marks[14]
    nxt = marks[15][0]
    assert nxt > size
    data = path.read_bytes()
    path.write_bytes(data[:(size + nxt) // 2])  # killed while writing the next record
    seg = journal.replay(str(path))
    assert same(seg, expected)
    vol, _ = make()
    ed = Editor(seg, vol)
    journal.Journal(seg, path=str(path), editor=ed, unsaved=True)  # what the window's Restore does
    ed.add_segment("After restore")
    ed.brush(seg.by_name("After restore"), vol.index_to_lps([8, 30, 3]), radius_mm=3)
    assert seg.by_name("Tumor") is None  # the cut falls after "remove Tumor"
    ed.remove_segment(seg.by_name("Necrosis"))
    after = state(seg)
    # killed again (no close): the next restore has everything made after the first one
    again = journal.replay(str(path))
    assert same(again, after) and again.by_name("After restore") is not None
    assert [r.path for r in journal.recoverable_in(str(tmp_path))] == [str(path)]
    # a restored journal stays recoverable until it is saved, even before the first new edit
    seg2 = journal.replay(str(path))
    j2 = journal.Journal(seg2, path=str(path), editor=Editor(seg2, vol), unsaved=True)
    assert journal.recoverable_in(str(tmp_path))
    j2.mark_saved("out.nii.gz")
    assert not journal.recoverable_in(str(tmp_path))
    j2.close()


def test_a_full_disk_mid_record_is_cut_back_and_the_next_edit_starts_a_fresh_journal(tmp_path):
    """A write that fails part way (the file size limit, as a full disk) leaves no torn record that
    later records would follow."""
    import resource

    vol, seg = make()
    ed = Editor(seg, vol)
    path = tmp_path / "full.hjournal"
    j = journal.Journal(seg, path=str(path), editor=ed)
    errors = []
    j.failed.connect(errors.append)
    s = ed.add_segment("Tumor")
    full = os.path.getsize(path) + 200  # room for part of the next record only
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (full, old_limit[1]))
        ed.brush(s, vol.index_to_lps([20, 20, 5]), radius_mm=6)  # a record of more than 200 bytes
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert errors and errors[0].errno == 27  # EFBIG
    assert os.path.getsize(path) == full - 200  # the part written was cut off again
    ed.brush(s, vol.index_to_lps([10, 10, 5]), radius_mm=3)  # space again: a fresh snapshot
    assert same(journal.replay(str(path)), state(seg))
    assert journal.recoverable_in(str(tmp_path))
    j.close()


CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from test_journal import OPS, make
    from viewer.core import journal
    from viewer.core.edits import Editor

    vol, seg = make()
    ed = Editor(seg, vol)
    journal.Journal(seg, path={path!r}, editor=ed)
    target, kill_at = {target!r}, {kill_at!r}
    count = 0

    def killer(*_args):  # connected after the journal: runs inside the op, after the journal saw the change
        global count
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    for name, op in OPS:
        if name == target:
            seg.changed.connect(killer)
            seg.segments_changed.connect(killer)
            seg.layers_changed.connect(killer)
            ed.step_ended.connect(killer)
        op(ed, seg, vol)
        if name == target:
            sys.exit(3)  # the op ended before kill_at notifications
""")


def _emissions(target: str) -> int:
    """How many change notifications (and the step's end) ``target`` sends."""
    vol, seg = make()
    ed = Editor(seg, vol)
    count = [0]

    def bump(*_a):
        count[0] += 1

    for name, op in OPS:
        if name == target:
            for sig in (seg.changed, seg.segments_changed, seg.layers_changed, ed.step_ended):
                sig.connect(bump)
            op(ed, seg, vol)
            return count[0]
        op(ed, seg, vol)
    raise AssertionError(target)


@pytest.mark.parametrize("target", ["add Edema (new layer)", "remove Tumor", "undo remove", "undo add 300"])
def test_a_process_killed_inside_add_remove_or_undo_restores_the_state_before_or_after_it(tmp_path, target):
    """SIGKILL at every notification inside the step: the journal gives back the state before the
    step or after it, never a torn one (voxels of a segment that does not exist, a deleted segment
    back and empty)."""
    _, marks = run_session(tmp_path / "reference.hjournal")
    n = next(i for i, (_, _, name) in enumerate(marks) if name == target)
    before, after = marks[n - 1][1], marks[n][1]
    emissions = _emissions(target)
    assert emissions >= 3  # several notifications: a kill between them used to tear the step
    for kill_at in range(1, emissions + 1):
        path = tmp_path / f"kill{kill_at}.hjournal"
        script = tmp_path / "child.py"
        script.write_text(CHILD.format(repo=str(REPO), tests=str(REPO / "tests" / "core"), path=str(path),
                                       target=target, kill_at=kill_at))
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        seg = journal.replay(str(path))
        assert consistent(seg), f"killed at notification {kill_at} of {target!r}"
        assert same(seg, before) or same(seg, after), f"killed at notification {kill_at} of {target!r}"


# paths built from what a file says
HOSTILE = ["..", ".", "../..", "../x", "/etc", "a/../../b", "1.2/../3", "..\\..\\x", "1.2.3\x00", "",
           "9" * 65, "1..2", ".1.2", "1.2.", "C:\\Windows", "\u00e9\u00e8", "uid-" + "0" * 16 + "/x"]


@pytest.mark.parametrize("uid", HOSTILE)
def test_a_hostile_series_uid_gives_one_safe_folder_inside_the_journal_folder(uid):
    name = journal.series_id(uid)
    assert name not in (".", "..") and os.sep not in name and "/" not in name and "\\" not in name
    assert all(c.isascii() and (c.isalnum() or c in ".-_") for c in name) and len(name) <= 64
    root = os.path.realpath(os.path.join(data_dir(), "segmentations"))
    assert os.path.dirname(os.path.realpath(journal.journal_dir(uid))) == root
    assert journal.series_id(name) == name  # stable: the folder a journal is written to is the one searched


def test_a_valid_uid_is_the_folder_name_as_it_is_and_different_values_do_not_collide():
    assert journal.series_id("1.2.840.113619.2.55.3.604688119") == "1.2.840.113619.2.55.3.604688119"
    names = {journal.series_id(u) for u in HOSTILE}
    assert len(names) == len(set(HOSTILE))


def test_a_hostile_segmentation_uid_in_a_journal_does_not_become_a_path(tmp_path):
    vol, _ = make()
    seg = Segmentation.for_volume(vol, "x", uid="../../escaped")
    seg.series_uid = "1.2.3"
    j = journal.Journal(seg)
    assert os.path.dirname(j.path) == journal.journal_dir("1.2.3")
    assert not os.path.exists(os.path.join(data_dir(), "escaped" + journal.SUFFIX))
    j.close(discard=True)


def test_a_journal_of_the_previous_format_still_replays_and_is_offered(tmp_path):
    """Journals left by the version before the checksummed format (u32 length + zlib body)."""
    import json
    import struct
    import zlib

    def old(header, payload=b""):
        h = json.dumps(header).encode()
        body = zlib.compress(struct.pack("<I", len(h)) + h + payload, 1)
        return struct.pack("<I", len(body)) + body

    vol, seg = make()
    s = seg.add_segment("Tumor")
    layer = np.zeros(seg.shape, np.uint8)
    layer[2:4, 5:9, 5:9] = s.number
    box = np.full((1, 2, 2), s.number, np.uint8)
    data = (old({"kind": "open", "shape": list(seg.shape), "affine": seg.affine.tolist(), "uid": "legacy",
                 "series_uid": "1.2.3", "for_uid": "", "meta": seg.meta()})
            + old({"kind": "layer", "layer": 0, "dtype": "uint8"}, layer.tobytes())
            + old({"kind": "box", "layer": 0, "box": [[8, 9], [0, 2], [0, 2]], "dtype": "uint8"}, box.tobytes()))
    path = tmp_path / "legacy.hjournal"
    path.write_bytes(data + data[-7:])  # and a torn tail
    back = journal.replay(str(path))
    layer[8:9, 0:2, 0:2] = s.number
    assert np.array_equal(back.layers[0], layer) and back.segments[0].name == "Tumor"
    assert [r.segments for r in journal.recoverable_in(str(tmp_path))] == [["Tumor"]]
