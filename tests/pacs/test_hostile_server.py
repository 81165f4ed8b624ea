"""A DICOMweb server that answers with hostile UIDs: nothing it says may become a URL or a path outside
where it belongs (issue 12, item 13).

The server is a real HTTP server on loopback (``http.server`` in a thread) that records every request
path; no Orthanc is needed, since the point is what a *bad* server sends.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from tests.pacs.helpers import assert_one_sentence
from viewer.pacs import PacsError, PacsNode, RetrieveJob
from viewer.pacs.dicomweb import WebClient, uid_segment
from viewer.pacs.listing import SeriesListing
from viewer.pacs.storage import LocalStore, safe_name

BASE = "/dicom-web"
HOSTILE = ["../../../admin", "1.2/../../x", "1.2.3%2F..%2F..", "1.2.3?x=1", "1.2.3#x", "1.2.3\n", "", " ",
           "1..2", ".1.2", "1.2.", "1.2.a", "1" * 65, "1.2.3/instances"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_the_url_builder_rejects_what_is_not_a_uid(bad):
    with pytest.raises(PacsError) as err:
        uid_segment(bad, "series")
    assert_one_sentence(str(err.value))
    assert len(str(err.value)) < 300


def test_the_url_builder_keeps_real_uids_and_quotes_them():
    assert uid_segment("1.2.840.10008.5.1.4.1.1.2", "study") == "1.2.840.10008.5.1.4.1.1.2"
    assert uid_segment(" 1.2.3\0", "study") == "1.2.3"  # DICOM's padding is not part of the UID
    assert uid_segment("1" * 64, "study") == "1" * 64


def _instance(sop_uid: str, study: str, series: str) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "CT"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom says the UID is invalid: that is the point
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


class Hostile:
    """What the server answers: a series UID for the series search, an instance body for WADO-RS."""

    def __init__(self, study: str, series_uid: str, body: bytes = b""):
        self.study, self.series_uid, self.body = study, series_uid, body
        self.paths: list[str] = []


@pytest.fixture
def hostile_server():
    servers = []

    def start(hostile: Hostile) -> PacsNode:
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_a):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                hostile.paths.append(self.path)
                path = self.path.split("?")[0]
                if path.endswith("/series"):
                    body = json.dumps([{"0020000E": {"vr": "UI", "Value": [hostile.series_uid]},
                                        "00080060": {"vr": "CS", "Value": ["CT"]},
                                        "00201209": {"vr": "IS", "Value": [1]}}]).encode()
                    ctype = "application/dicom+json"
                elif path.startswith(f"{BASE}/studies/") and hostile.body:
                    body, ctype = hostile.body, "application/dicom"
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return PacsNode("hostile", protocol="dicomweb", url=f"http://127.0.0.1:{server.server_port}{BASE}",
                        timeout=5)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_hostile_series_uid_never_reaches_a_url(hostile_server, tmp_path, data_dir):
    study = generate_uid()
    hostile = Hostile(study, "../../../../admin/delete")
    node = hostile_server(hostile)
    with pytest.raises(PacsError) as err:
        RetrieveJob(node, study, store=LocalStore(tmp_path / "store")).run()
    assert_one_sentence(str(err.value))
    assert "not a DICOM UID" in str(err.value)
    assert hostile.paths, "the series search must have reached the server"
    assert all(p.startswith(f"{BASE}/studies/{study}/series") for p in hostile.paths), hostile.paths
    assert not any(".." in p or "admin" in p for p in hostile.paths), hostile.paths


def test_a_hostile_study_uid_typed_by_the_user_is_refused_before_any_request(hostile_server, tmp_path, data_dir):
    hostile = Hostile("1.2.3", "1.2.3.4")
    node = hostile_server(hostile)
    with pytest.raises(PacsError) as err:
        RetrieveJob(node, "1.2.3/../../../admin", store=LocalStore(tmp_path / "store")).run()
    assert_one_sentence(str(err.value))
    assert hostile.paths == []


def test_a_retrieved_instance_with_a_hostile_sop_uid_is_not_written(hostile_server, tmp_path, data_dir):
    study, series = generate_uid(), generate_uid()
    hostile = Hostile(study, series, _instance("../../../../escaped", study, series))
    node = hostile_server(hostile)
    store = LocalStore(tmp_path / "store")
    listing = SeriesListing(study, series, "CT", 1, "", 1)
    with pytest.raises(PacsError) as err:
        WebClient(node).fetch(listing, None, store, lambda *a: None)
    assert_one_sentence(str(err.value))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], written


@pytest.mark.parametrize("bad", HOSTILE + ["..", ".", "/etc/passwd", "a/b", "1.2\\udcff"])
def test_a_stored_file_name_never_leaves_its_folder(tmp_path, bad):
    store = LocalStore(tmp_path / "store")
    path = store.path_for("1.2.3", "1.2.3.4", bad)
    assert path.parent == store.series_dir("1.2.3", "1.2.3.4")
    assert Path(path.name).name == path.name and "\n" not in path.name and path.name not in ("..dcm", ".dcm")
    assert safe_name(bad) != safe_name(bad + "x")
