"""Cine stepping (no Qt): one slice per frame, loop back to the start or bounce at the ends; linked
series follow; the frame rate gives the timer interval."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.cine import Cine
from viewer.core.viewstate import SeriesState, ViewerModel
from viewer.core.volume import SourceInfo, Volume


def model_with(n_slices: int = 5, linked: bool = False) -> ViewerModel:
    model = ViewerModel()
    for key in ("a", "b") if linked else ("a",):
        vol = Volume(np.zeros((n_slices, 8, 8), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]), modality="CT",
                     source=SourceInfo(frame_of_reference_uid="1.2.3"))
        model.add_series(SeriesState(key, vol), [0, 1, 2, 3] if key == "a" else [])
    return model


def k_of(model, key="a") -> int:
    s = model.series[key]
    return int(round(s.volume.lps_to_index(s.point)[2]))


def play(cine, model, frames):
    out = []
    for _ in range(frames):
        assert cine.tick(0)
        out.append(k_of(model))
    return out


def test_loop_and_bounce():
    model = model_with(5)
    model.step(0, -10)  # to the first slice (axial: backwards is k down for this grid)
    start = k_of(model)
    cine = Cine(model, fps=20)
    seq = play(cine, model, 9)
    forward = 1 if seq[0] > start else -1
    ends = (start, start + 4 * forward)
    assert seq[:4] == [start + forward * n for n in range(1, 5)]
    assert seq[4] == ends[0] and seq[5] == start + forward  # loop: back to the first slice, on again
    model.step(0, -10)
    cine = Cine(model, fps=20, mode="bounce")
    seq = play(cine, model, 10)
    assert seq == [start + forward * n for n in (1, 2, 3, 4, 3, 2, 1, 0, 1, 2)]  # reverses at both ends


def test_linked_series_follow_and_interval():
    model = model_with(5, linked=True)
    cine = Cine(model, fps=25)
    assert cine.interval_ms == 40
    cine.set_fps(500)
    assert cine.fps == 60 and cine.interval_ms == 17
    for _ in range(3):
        cine.tick(0)
        assert np.allclose(model.series["a"].point, model.series["b"].point)
    with pytest.raises(ValueError):
        cine.set_mode("shuffle")


def test_nothing_to_play():
    model = ViewerModel()
    assert Cine(model).slot_for(0) is None and not Cine(model).tick(0)
    one = model_with(1)
    assert not Cine(one).tick(0)  # one slice: nowhere to go
