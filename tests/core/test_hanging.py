"""Hanging protocols: the default set loads and matches as documented, a rule lays out a ViewerModel
(layout, planes, series per slot, windows), and the reader's saved rule wins over the defaults."""

from __future__ import annotations

import json

import numpy as np
import pytest

from viewer.core import hanging
from viewer.core.errors import HounsfieldError
from viewer.core.viewstate import SeriesState, ViewerModel
from viewer.core.volume import SourceInfo, Volume


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOUNSFIELD_CONFIG_DIR", str(tmp_path / "config"))


def ct(key: str, study: str, description: str = "", window=(40.0, 400.0)) -> SeriesState:
    vol = Volume(np.zeros((12, 16, 16), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]), modality="CT", units="HU",
                 window=window, source=SourceInfo(study_instance_uid=study, series_instance_uid=key,
                                                  study_description=description, frame_of_reference_uid=study))
    return SeriesState(key, vol, window=window)


def names(ctx: hanging.StudyContext) -> str | None:
    rule = hanging.best_match(hanging.load_protocols(), ctx)
    return rule.name if rule else None


def test_default_set_matches_as_documented():
    rules = hanging.load_protocols()
    assert {r.name for r in rules} >= {"CT chest with prior", "CT with prior", "Single CT", "Brain MR T1 / FLAIR"}
    assert not any(r.user for r in rules)
    assert names(hanging.StudyContext("CT", "CHEST", priors=1)) == "CT chest with prior"
    assert names(hanging.StudyContext("CT", "CT THORAX MIT KM", priors=1)) == "CT chest with prior"
    assert names(hanging.StudyContext("CT", "ABDOMEN", priors=1)) == "CT with prior"
    assert names(hanging.StudyContext("CT", "", priors=0)) == "Single CT"
    mr = hanging.StudyContext("MR", "BRAIN", 0, ("t1_mpr_tra", "T2 FLAIR ax", "DWI"))
    assert names(mr) == "Brain MR T1 / FLAIR"
    assert names(hanging.StudyContext("MR", "BRAIN", 0, ("t1_mpr_tra", "DWI"))) is None  # no FLAIR series
    assert names(hanging.StudyContext("MR", "KNEE", 0, ("t1", "flair"))) is None
    assert names(hanging.StudyContext("US", "CHEST", 1)) is None


def test_chest_rule_lays_out_current_and_prior():
    model = ViewerModel()
    cur, prior = ct("cur", "1.1"), ct("pri", "1.2")
    model.add_series(cur)
    model.add_series(prior, [])
    rule = hanging.best_match(hanging.load_protocols(), hanging.StudyContext("CT", "CHEST", 1))
    changed = hanging.apply(model, rule, {"current": "cur", "prior": "pri"})
    assert changed == [0, 1, 2] and model.layout == "1x3"
    assert [(vp.series, vp.plane) for vp in model.viewports[:3]] == [("cur", "axial"), ("pri", "axial"),
                                                                      ("cur", "coronal")]
    assert cur.window == (-600.0, 1500.0) and cur.preset == "Lung" and prior.window == (-600.0, 1500.0)


def test_single_ct_keeps_the_readers_layout_and_a_missing_series_keeps_its_slot():
    model = ViewerModel()
    model.add_series(ct("cur", "1.1"))
    model.set_layout("1x1")
    model.set_plane(0, "sagittal")
    rule = hanging.best_match(hanging.load_protocols(), hanging.StudyContext("CT", "", 0))
    hanging.apply(model, rule, {"current": "cur"})
    assert model.layout == "1x1" and [vp.plane for vp in model.viewports] == ["axial", "coronal", "sagittal", "3d"]
    chest = next(r for r in hanging.load_protocols() if r.name == "CT chest with prior")
    assert hanging.apply(model, chest, {"current": "cur"}) == [0, 2]  # no prior open: slot 1 keeps what it shows


def test_saved_layout_is_the_readers_rule_and_wins(tmp_path):
    model = ViewerModel()
    cur, prior = ct("cur", "1.1", window=(50.0, 350.0)), ct("pri", "1.2")
    model.add_series(cur)
    model.add_series(prior, [])
    model.compare("cur", "pri", "coronal")
    cur.set_window(-500.0, 1400.0)  # by hand: no preset name, so centre and width are saved
    prior.set_window(400.0, 1800.0, preset="Bone")
    rule = hanging.rule_from_model(model, "My chest follow-up", {"current": "cur", "prior": "pri"}, "CT", "CHEST")
    path = hanging.save_user_rule(rule)
    assert path.parent == hanging.user_dir() and path.name == "my-chest-follow-up.json"
    saved = json.loads(path.read_text())
    assert saved["match"] == {"modality": "CT", "body_part": ["CHEST"], "priors": 1} and saved["layout"] == "1x3"
    assert saved["slots"][:2] == [{"series": "current", "plane": "coronal", "window": [-500.0, 1400.0]},
                                  {"series": "prior", "plane": "coronal", "window": "Bone"}]
    also_t1 = hanging.rule_from_model(model, "x", {"current": "cur", "current:t1": "cur", "prior": "pri"}, "CT")
    assert [s.series for s in also_t1.slots[:2]] == ["current", "prior"] and not also_t1.slots[0].description
    rules = hanging.load_protocols()
    assert rules[0].user and rules[0].name == "My chest follow-up"
    assert names(hanging.StudyContext("CT", "CHEST", 1)) == "My chest follow-up"  # wins over the default
    assert names(hanging.StudyContext("CT", "ABDOMEN", 1)) == "CT with prior"  # not a chest: the defaults

    other = ViewerModel()
    c2, p2 = ct("c2", "2.1"), ct("p2", "2.2")
    other.add_series(c2)
    other.add_series(p2, [])
    hanging.apply(other, rules[0], {"current": "c2", "prior": "p2"})
    assert [(vp.series, vp.plane) for vp in other.viewports[:2]] == [("c2", "coronal"), ("p2", "coronal")]
    assert c2.window == (-500.0, 1400.0) and p2.window == (400.0, 1800.0) and p2.preset == "Bone"


def test_a_broken_rule_is_one_sentence_and_skipped():
    folder = hanging.user_dir()
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text('{"name": "x", "layout": "5x5", "slots": []}')
    (folder / "worse.json").write_text("{not json")
    errors: list[str] = []
    rules = hanging.load_protocols(errors)
    assert not any(r.user for r in rules) and len(errors) == 2
    assert all(e.count(". ") == 0 and e.endswith(".") and "fix or delete" in e for e in errors)
    with pytest.raises(HounsfieldError, match="bad.json"):
        hanging.load_protocols()
