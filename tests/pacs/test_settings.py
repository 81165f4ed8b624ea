"""Node settings, queries, result sorting and the managed folder: no server needed."""

from __future__ import annotations

import io
import json
import os
import stat

import numpy as np
import pydicom
import pytest

from tests.conftest import data_path
from tests.pacs.helpers import assert_one_sentence
from viewer.core.errors import HounsfieldError
from viewer.pacs import LocalAE, PacsNode, PacsSettings, Query, QueryResult, TlsSettings, sort_results
from viewer.pacs.storage import LocalStore, file_header, safe_name


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOUNSFIELD_CONFIG_DIR", str(tmp_path / "cfg"))
    return tmp_path / "cfg"


def test_settings_round_trip_private_file(config_dir):
    s = PacsSettings(LocalAE("READER1", 11200))
    s.add(PacsNode("pacs", ae_title="PACS", host="10.1.2.3", port=4242, retrieve_method="C-MOVE",
                   tls=TlsSettings(True, "/etc/ca.pem", verify=False)))
    s.add(PacsNode("web", "dicomweb", url="https://pacs.example.org/dicom-web", auth="bearer", token="t0k"))
    path = s.save()
    assert path == str(config_dir / "pacs.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it may hold passwords and tokens
    back = PacsSettings.load()
    assert back.local == LocalAE("READER1", 11200)
    assert back.node("pacs").tls.enabled and back.node("pacs").tls.ca_file == "/etc/ca.pem"
    assert back.node("pacs").retrieve_method == "C-MOVE"
    assert back.node("web").token == "t0k" and back.node("web").retrieve_method == "WADO-RS"
    assert json.loads(open(path).read())["nodes"][0]["host"] == "10.1.2.3"


def test_missing_settings_file_means_no_nodes(config_dir):
    assert PacsSettings.load().nodes == []
    with pytest.raises(HounsfieldError) as err:
        PacsSettings.load().node("pacs")
    assert_one_sentence(str(err.value))


def test_broken_settings_file_is_one_sentence(config_dir):
    config_dir.mkdir()
    (config_dir / "pacs.json").write_text("{not json")
    with pytest.raises(HounsfieldError) as err:
        PacsSettings.load()
    assert_one_sentence(str(err.value))


@pytest.mark.parametrize("node", [
    PacsNode("a", ae_title="THIS_AE_TITLE_IS_TOO_LONG", host="h", port=104),
    PacsNode("b", ae_title="", host="h", port=104),
    PacsNode("c", ae_title="PACS", host="", port=104),
    PacsNode("d", ae_title="PACS", host="h", port=0),
    PacsNode("e", ae_title="PACS", host="h", port=104, retrieve_method="C-FETCH"),
    PacsNode("f", "dicomweb", url="pacs.example.org"),
    PacsNode("g", "dicomweb", url="http://pacs", auth="basic"),
    PacsNode("h", "dicomweb", url="http://pacs", auth="bearer"),
    PacsNode("i", "dimse", ae_title="PACS", host="h", port=104, timeout=0),
    PacsNode("j", "carrier-pigeon"),
])
def test_invalid_nodes_are_refused_in_one_sentence(node):
    with pytest.raises(HounsfieldError) as err:
        PacsSettings().add(node)
    assert_one_sentence(str(err.value))


def test_duplicate_node_name_needs_replace():
    s = PacsSettings()
    s.add(PacsNode("p", ae_title="A", host="h", port=1))
    with pytest.raises(HounsfieldError):
        s.add(PacsNode("p", ae_title="B", host="h", port=1))
    s.add(PacsNode("p", ae_title="B", host="h", port=1), replace=True)
    assert s.node("p").ae_title == "B"
    s.remove("p")
    assert s.nodes == []


def test_query_normalises_dates_and_builds_identifier():
    q = Query(patient_name="DOE^*", date_from="2007-01-01", date_to="20071231", modality="ct").normalized()
    assert q.date_range == "20070101-20071231"
    ds = q.identifier()
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "DOE^*" and ds.ModalitiesInStudy == "CT" and ds.StudyDate == "20070101-20071231"
    assert "NumberOfStudyRelatedInstances" in ds and ds.StudyInstanceUID == ""
    assert Query(date_from="2020-05-01").normalized().date_range == "20200501-"
    assert Query(date_to="2020-05-01").normalized().date_range == "-20200501"
    series = Query("series", study_uid="1.2.3", modality="SEG").normalized().identifier()
    assert series.QueryRetrieveLevel == "SERIES" and series.Modality == "SEG" and series.StudyInstanceUID == "1.2.3"


@pytest.mark.parametrize("query", [
    Query(date_from="2020-13-45x"), Query(date_from="2021-01-01", date_to="2020-01-01"), Query("SERIES"),
    Query("PATIENT"),
])
def test_bad_queries_are_one_sentence(query):
    with pytest.raises(HounsfieldError) as err:
        query.normalized()
    assert_one_sentence(str(err.value))


def test_results_sort_numbers_text_and_blanks_last():
    rows = [QueryResult("STUDY", "1", patient_name="b", num_instances=10, study_date="20200101"),
            QueryResult("STUDY", "2", patient_name="A", num_instances=9, study_date=""),
            QueryResult("STUDY", "3", patient_name="", num_instances=None, study_date="20190101")]
    assert [r.study_uid for r in sort_results(rows, "num_instances")] == ["2", "1", "3"]
    assert [r.study_uid for r in sort_results(rows, "num_instances", descending=True)] == ["1", "2", "3"]
    assert [r.study_uid for r in sort_results(rows, "patient_name")] == ["2", "1", "3"]
    assert [r.study_uid for r in sort_results(rows, "study_date")] == ["3", "1", "2"]
    with pytest.raises(HounsfieldError):
        sort_results(rows, "shoe_size")


def test_file_header_makes_the_received_bytes_a_valid_file(tmp_path):
    """What a C-STORE delivers (the bare data set) plus our hand-made header reads back as the original."""
    src = sorted(data_path("chest-ct").iterdir())[0]
    original = pydicom.dcmread(src)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, original)  # preamble + meta + data set, as read
    raw = buf.getvalue()
    data_set = raw[128 + 4 + 12 + int.from_bytes(raw[140:144], "little"):]  # strip what the network never sends
    store = LocalStore(tmp_path / "studies")
    header = file_header(original.SOPClassUID, original.SOPInstanceUID, original.file_meta.TransferSyntaxUID, "PACS")
    path, new = store.write(original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID,
                            [header, memoryview(data_set)])
    assert new and path.name == f"{original.SOPInstanceUID}.dcm"
    back = pydicom.dcmread(path)
    assert back.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert back.file_meta.SourceApplicationEntityTitle == "PACS"
    assert np.array_equal(back.pixel_array, original.pixel_array)
    # a second arrival of the same instance is not written again
    again, new = store.write(original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID,
                             [b"garbage"])
    assert again == path and not new and np.array_equal(pydicom.dcmread(path).pixel_array, original.pixel_array)


def test_partial_files_are_invisible_and_cleaned(tmp_path):
    store = LocalStore(tmp_path / "studies")
    folder = store.series_dir("1.2", "1.2.3")
    folder.mkdir(parents=True)
    (folder / "1.2.3.4.dcm").write_bytes(b"x")
    stale = folder / ".1.2.3.5.dcm.999999-1.part"
    stale.write_bytes(b"half")
    writer = store.open_writer("1.2", "1.2.3", "1.2.3.6")
    writer.write(b"half")
    assert store.present("1.2", "1.2.3", ["1.2.3.4", "1.2.3.5", "1.2.3.6"]) == {"1.2.3.4"}
    assert store.count("1.2", "1.2.3") == 1
    assert store.clean_partial("1.2") == 1 and not stale.exists()
    writer.discard()
    assert sorted(p.name for p in folder.iterdir()) == ["1.2.3.4.dcm"]


def test_uids_cannot_escape_the_managed_folder(tmp_path):
    store = LocalStore(tmp_path / "studies")
    assert safe_name("1.2.840.10008") == "1.2.840.10008"
    path = store.path_for("../../etc", "..", "passwd")
    assert tmp_path / "studies" in path.parents and ".." not in path.parts


def test_dicomweb_authentication_is_sent():
    from viewer.pacs.dicomweb import WebClient

    bearer = WebClient(PacsNode("w", "dicomweb", url="https://pacs/dicom-web/", auth="bearer", token="t0k"))
    assert bearer.session.headers["Authorization"] == "Bearer t0k" and bearer.base == "https://pacs/dicom-web"
    basic = WebClient(PacsNode("w", "dicomweb", url="http://pacs/dicom-web", auth="basic", username="u",
                               password="p"))
    assert basic.session.auth == ("u", "p") and "Authorization" not in basic.session.headers
    pinned = WebClient(PacsNode("w", "dicomweb", url="https://pacs", tls=TlsSettings(ca_file="/etc/ca.pem")))
    assert pinned.session.verify == "/etc/ca.pem"
