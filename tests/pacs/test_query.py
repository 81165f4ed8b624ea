"""C-FIND and QIDO-RS against the real Orthanc: every search term, both levels, both protocols agree."""

from __future__ import annotations

import pytest

from viewer.pacs import Query, echo, query, sort_results

NODES = ["orthanc", "orthanc-web"]


@pytest.mark.parametrize("name", NODES)
def test_test_connection(orthanc, name):
    assert echo(orthanc.node(name), orthanc.local) > 0


def _studies(env, name, **terms):
    return {r.study_uid: r for r in query(env.node(name), Query(**terms), env.local)}


@pytest.mark.parametrize("name", NODES)
def test_all_studies_with_their_sizes(orthanc, name):
    found = _studies(orthanc, name)
    assert set(found) == {orthanc.chest.study_uid, orthanc.brain.study_uid, orthanc.liver.study_uid}
    chest, brain, liver = (found[s.study_uid] for s in (orthanc.chest, orthanc.brain, orthanc.liver))
    assert (chest.num_instances, chest.num_series, chest.modalities, chest.study_date) == (141, 1, "CT", "20070208")
    assert (brain.num_instances, brain.patient_name, brain.patient_id) == (120, "VS-SEG-001", "VS-SEG-001")
    assert liver.num_series == 2 and set(liver.modalities.split(", ")) == {"CT", "SEG"}


@pytest.mark.parametrize("name", NODES)
@pytest.mark.parametrize("terms, expect", [
    ({"patient_name": "VS-SEG*"}, {"brain"}),
    ({"patient_name": "JANCT00?"}, {"liver"}),
    ({"patient_name": "NOBODY*"}, set()),
    ({"patient_id": "99000"}, {"liver"}),
    ({"accession_number": "03086212"}, {"liver"}),
    ({"date_from": "2000-01-01", "date_to": "2010-12-31"}, {"chest", "liver"}),
    ({"date_from": "2005-01-01"}, {"chest"}),
    ({"date_to": "19991231"}, {"brain"}),
    ({"modality": "MR"}, {"brain"}),
    ({"modality": "SEG"}, {"liver"}),
    ({"modality": "CT", "date_from": "2007-02-08", "date_to": "2007-02-08"}, {"chest"}),
])
def test_search_terms(orthanc, name, terms, expect):
    uids = {"chest": orthanc.chest.study_uid, "brain": orthanc.brain.study_uid, "liver": orthanc.liver.study_uid}
    assert set(_studies(orthanc, name, **terms)) == {uids[k] for k in expect}


@pytest.mark.parametrize("name", NODES)
def test_series_level(orthanc, name):
    series = query(orthanc.node(name), Query("SERIES", study_uid=orthanc.liver.study_uid), orthanc.local)
    by_modality = {s.modalities: s for s in series}
    assert set(by_modality) == {"CT", "SEG"}
    assert by_modality["CT"].series_uid == orthanc.liver.series_uid and by_modality["CT"].num_instances == 3
    assert by_modality["SEG"].num_instances == 1
    only_seg = query(orthanc.node(name), Query("SERIES", study_uid=orthanc.liver.study_uid, modality="SEG"))
    assert [s.modalities for s in only_seg] == ["SEG"]


def test_both_protocols_and_sorting_agree(orthanc):
    dimse, web = (query(orthanc.node(n), Query(), orthanc.local) for n in NODES)
    for column in ("study_date", "num_instances", "study_uid"):
        assert [r.study_uid for r in sort_results(dimse, column)] == [r.study_uid for r in sort_results(web, column)]
    newest_first = sort_results(dimse, "study_date", descending=True)
    assert [r.study_date for r in newest_first] == ["20070208", "20030417", "19940904"]
