"""Every way talking to a PACS fails, against the real Orthanc: one sentence each, nothing half-written.

Server down, server stopped (SIGKILL) or frozen (SIGSTOP) in the middle of a transfer, association
rejected (our AE title, its AE title), an unknown C-MOVE destination, refused credentials, a wrong
URL, TLS, a busy storage port.  Time-outs are 2 s here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.pacs.helpers import assert_one_sentence, assert_same_volume, leftovers
from tests.pacs.orthanc import OrthancServer
from viewer.core.dicom.index import StudyIndex
from viewer.core.errors import HounsfieldError
from viewer.pacs import (
    AssociationRejected,
    AuthenticationFailed,
    LocalAE,
    PacsError,
    PacsTimeout,
    Query,
    RetrieveJob,
    ServerUnreachable,
    StorageSCP,
    TlsSettings,
    TransferFailed,
    UnknownAE,
    echo,
    query,
    retrieve_study,
)
from viewer.pacs.storage import studies_dir

ALL = ["orthanc", "orthanc-move", "orthanc-web"]


def indexed(folder: Path) -> int:
    index = StudyIndex()
    try:
        return len(index.headers_under(str(folder)))
    finally:
        index.close()


def fails(exc_type, fn, *args, **kwargs) -> PacsError:
    with pytest.raises(exc_type) as err:
        fn(*args, **kwargs)
    assert_one_sentence(str(err.value))
    return err.value


@pytest.mark.parametrize("name", ALL)
def test_server_down(orthanc, data_dir, name):
    orthanc.orthanc.stop()
    node = orthanc.node(name, timeout=2)
    fails(ServerUnreachable, echo, node, orthanc.local)
    fails(ServerUnreachable, query, node, Query(), orthanc.local)
    fails(ServerUnreachable, retrieve_study, node, orthanc.chest.study_uid, local=orthanc.local)
    assert not studies_dir().exists() or leftovers(studies_dir()) == []


def test_unknown_host(orthanc):
    err = fails(ServerUnreachable, echo, orthanc.node(host="no-such-pacs.invalid", timeout=2))
    assert "no-such-pacs.invalid" in str(err)


@pytest.mark.parametrize("name", ["orthanc", "orthanc-move"])
def test_wrong_called_ae_title_is_rejected(orthanc, data_dir, name):
    node = orthanc.node(name, ae_title="NOT_ORTHANC")
    err = fails(UnknownAE, echo, node, orthanc.local)
    assert "NOT_ORTHANC" in str(err)
    fails(UnknownAE, retrieve_study, node, orthanc.chest.study_uid, local=orthanc.local)
    fails(AssociationRejected, query, node, Query(), orthanc.local)


def test_caller_not_allowed_to_cget(orthanc, data_dir):
    err = fails(TransferFailed, retrieve_study, orthanc.node(), orthanc.liver.study_uid,
                local=LocalAE("STRANGER", 11119))
    assert "STRANGER" in str(err)


def test_unknown_cmove_destination(orthanc, data_dir):
    """Orthanc answers an unknown destination with 'unable to process' (0xC000), others with 0xA801."""
    err = fails(PacsError, retrieve_study, orthanc.node("orthanc-move"), orthanc.liver.study_uid,
                local=LocalAE("STRANGER", 11119))
    assert "STRANGER" in str(err) and "destination" in str(err)


def test_unknown_study(orthanc, data_dir):
    fails(PacsError, retrieve_study, orthanc.node(), "1.2.3.4.5.6", local=orthanc.local)
    fails(PacsError, retrieve_study, orthanc.node("orthanc-web"), orthanc.chest.study_uid, ["1.2.3"])


@pytest.mark.parametrize("name", ["orthanc", "orthanc-web"])
def test_frozen_server_times_out(orthanc, name):
    orthanc.orthanc.pause()
    err = fails(PacsTimeout, echo, orthanc.node(name, timeout=2), orthanc.local)
    assert "2 s" in str(err)


@pytest.mark.parametrize("name", ALL)
def test_server_frozen_mid_transfer(orthanc, data_dir, name):
    job = RetrieveJob(orthanc.node(name, timeout=2), orthanc.chest.study_uid, local=orthanc.local)

    def progress(p):
        if p.done == 20:
            orthanc.orthanc.pause()

    err = fails(PacsTimeout, job.run, progress=progress)
    _check_cut_short(job, orthanc, err)


@pytest.mark.parametrize("name", ALL)
def test_server_killed_mid_transfer_then_resume(orthanc, data_dir, name):
    job = RetrieveJob(orthanc.node(name, timeout=5), orthanc.chest.study_uid, local=orthanc.local)

    def progress(p):
        if p.done == 40:
            orthanc.orthanc.kill()

    err = fails((TransferFailed, ServerUnreachable), job.run, progress=progress)
    kept = _check_cut_short(job, orthanc, err)
    orthanc.orthanc.start()  # same storage: the study is still there
    with StorageSCP(orthanc.local) as scp:
        result = RetrieveJob(orthanc.node(name), orthanc.chest.study_uid, local=orthanc.local, scp=scp).run()
    assert (result.received, result.skipped) == (141 - kept, kept)
    folder = result.series[0].folder
    assert indexed(folder) == 141 and leftovers(studies_dir()) == []
    assert_same_volume(folder, orthanc.chest.folder)


def _check_cut_short(job, orthanc, err) -> int:
    """What a cut-short transfer leaves: whole files only, the count in the message, nothing in the index."""
    folder = job.store.series_dir(orthanc.chest.study_uid, orthanc.chest.series_uid)
    kept = sorted(folder.glob("*.dcm"))
    assert 20 <= len(kept) < 141
    assert err.received == len(kept) and err.expected == 141 and f"{len(kept)} of 141" in str(err)
    for p in kept:
        assert pydicom.dcmread(p).pixel_array.shape == (512, 512)
    assert [p for p in folder.iterdir() if p.suffix != ".dcm"] == []
    assert indexed(folder) == 0
    return len(kept)


def test_dicomweb_credentials(orthanc):
    fails(AuthenticationFailed, echo, orthanc.node("orthanc-web", password="wrong"))
    fails(AuthenticationFailed, query, orthanc.node("orthanc-web", auth="none"), Query())
    fails(AuthenticationFailed, echo, orthanc.node("orthanc-web", auth="bearer", token="not-a-token"))


def test_dicomweb_wrong_url(orthanc):
    node = orthanc.node("orthanc-web")
    err = fails(PacsError, echo, orthanc.node("orthanc-web", url=node.url + "/nowhere"))
    assert "404" in str(err)


def test_storage_port_in_use(orthanc):
    with StorageSCP(orthanc.local):
        with pytest.raises(HounsfieldError) as err:
            StorageSCP(orthanc.local).start()
    assert_one_sentence(str(err.value))
    assert str(orthanc.local.storage_port) in str(err.value)


# -- a second, strict Orthanc speaking DICOM TLS only ---------------------------------------------

@pytest.fixture(scope="module")
def tls_orthanc(pacs_env, tmp_path_factory):
    """Orthanc with DICOM TLS (certificate from a throw-away CA) that accepts only known AE titles."""
    root = tmp_path_factory.mktemp("tls")

    def sh(*cmd):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, timeout=60)

    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
       "-days", "2", "-subj", "/CN=Hounsfield test CA")
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
       "-subj", "/CN=127.0.0.1")
    (root / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
       "-out", "server.crt", "-days", "2", "-extfile", "san.cnf")
    server = OrthancServer(root / "orthanc", aet="SECURE", dicom_port=4243, http_port=8043,
                           modalities={"hounsfield": ("HOUNSFIELD", "127.0.0.1", 11112)},
                           extra={"DicomTlsEnabled": True, "DicomTlsCertificate": str(root / "server.crt"),
                                  "DicomTlsPrivateKey": str(root / "server.key"),
                                  "DicomTlsTrustedCertificates": str(root / "ca.crt"),
                                  "DicomTlsRemoteCertificateRequired": False,
                                  "DicomAlwaysAllowEcho": False, "DicomAlwaysAllowStore": False})
    server.start()
    for f in sorted(pacs_env.liver.folder.iterdir()):  # seed over HTTP (the DICOM port wants TLS)
        server.rest("/instances", "POST", data=f.read_bytes())
    try:
        yield server, root / "ca.crt"
    finally:
        server.stop()


def _tls_node(server, ca: str, **kw):
    from viewer.pacs import PacsNode

    return PacsNode("secure", ae_title="SECURE", host="127.0.0.1", port=server.dicom_port, timeout=3,
                    tls=TlsSettings(True, ca, **kw))


def test_tls_echo_query_and_cget(tls_orthanc, data_dir, pacs_env):
    server, ca = tls_orthanc
    node = _tls_node(server, str(ca))
    assert echo(node, pacs_env.local) > 0
    assert [r.study_uid for r in query(node, Query(), pacs_env.local)] == [pacs_env.liver.study_uid]
    result = retrieve_study(node, pacs_env.liver.study_uid, [pacs_env.liver.series_uid], local=pacs_env.local)
    assert result.received == 3
    assert_same_volume(result.series[0].folder, pacs_env.liver.folder)


def test_tls_errors(tls_orthanc, data_dir, pacs_env):
    server, ca = tls_orthanc
    err = fails(UnknownAE, echo, _tls_node(server, str(ca)), LocalAE("STRANGER"))  # not on its list
    assert "STRANGER" in str(err)
    fails(ServerUnreachable, echo, _tls_node(server, ""), pacs_env.local)  # its CA is not one we trust
    fails(ServerUnreachable, retrieve_study, _tls_node(server, ""), pacs_env.liver.study_uid, local=pacs_env.local)
    plain = _tls_node(server, str(ca))
    plain.tls.enabled = False
    err = fails((PacsTimeout, AssociationRejected), echo, plain, pacs_env.local)  # a plain hello to a TLS port
    assert "TLS" in str(err)


@pytest.mark.parametrize("name", ["orthanc", "orthanc-web"])
def test_disk_not_writable(orthanc, data_dir, tmp_path, name):
    from viewer.pacs.storage import LocalStore

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the studies folder should be")
    job = RetrieveJob(orthanc.node(name), orthanc.liver.study_uid, [orthanc.liver.series_uid],
                      local=orthanc.local, store=LocalStore(blocker))
    err = fails(TransferFailed, job.run)
    assert "disk" in str(err)
    assert blocker.read_text().startswith("a file")
