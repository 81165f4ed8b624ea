"""The PACS tests run against a real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``).

How: the package-scoped fixture ``pacs_env``

1. installs ``orthanc``, ``orthanc-dicomweb`` and ``dcmtk`` with apt-get when they are missing
   (root and the network needed; done first, while the host network is still ours);
2. moves pytest's main thread into a private network namespace that holds only loopback
   (``netns.enter``: ``unshare(CLONE_NEWNET)``, needs root).  Namespaces belong to threads, and
   everything that thread starts afterwards (Orthanc, dcmtk's tools, pynetdicom's threads, our
   storage SCP) is inside too: nothing listens on, or reaches, the host's network;
3. starts Orthanc with its own configuration and storage folder (in pytest's tmp dir), seeds it
   with the real chest CT, brain MR and a small liver CT + SEG study by C-STORE (dcmtk's
   ``storescu``: an oracle independent of the code under test), and writes our ``pacs.json``
   with three nodes (C-GET, C-MOVE, DICOMweb with basic auth) into a private config dir;
4. afterwards stops Orthanc by its process id and moves the thread back to the host namespace.

Tests that stop, pause or kill the server use the ``orthanc`` fixture, which restarts it (same
storage) before the next test.  Every wait is bounded; time-outs in error tests are 2 s.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from tests.conftest import data_path
from tests.pacs import netns
from tests.pacs.orthanc import OrthancServer, ensure_packages

AET, OUR_AET, SCP_PORT = "ORTHANC", "HOUNSFIELD", 11112
USER, PASSWORD = "reader", "s3cret"


@dataclass
class Study:
    folder: Path
    study_uid: str
    series_uid: str
    count: int


@dataclass
class PacsEnv:
    orthanc: OrthancServer
    config_dir: Path
    chest: Study
    brain: Study
    liver: Study  # 3 CT slices + a SEG, with patient name, ID and accession number
    liver_seg: Path

    def settings(self):
        from viewer.pacs import PacsSettings

        return PacsSettings.load()

    def node(self, name: str = "orthanc", **changes):
        node = self.settings().node(name)
        for k, v in changes.items():
            setattr(node, k, v)
        return node

    @property
    def local(self):
        return self.settings().local


def _study(folder: Path) -> Study:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return Study(folder, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), len(files))


def _write_nodes(orthanc: OrthancServer) -> None:
    from viewer.pacs import LocalAE, PacsNode, PacsSettings

    settings = PacsSettings(LocalAE(OUR_AET, SCP_PORT))
    settings.add(PacsNode("orthanc", ae_title=AET, host="127.0.0.1", port=orthanc.dicom_port, timeout=10))
    settings.add(PacsNode("orthanc-move", ae_title=AET, host="127.0.0.1", port=orthanc.dicom_port,
                          retrieve_method="C-MOVE", timeout=10))
    settings.add(PacsNode("orthanc-web", "dicomweb", url=orthanc.dicomweb_url, auth="basic", username=USER,
                          password=PASSWORD, timeout=10))
    settings.save()


@pytest.fixture(scope="package")
def pacs_env(tmp_path_factory):
    chest, brain = data_path("chest-ct"), data_path("brain-mr-t1")
    liver_ct = data_path("dicom-objects", "dcmqi-liver", "ct-3slice")
    liver_seg = data_path("dicom-objects", "dcmqi-liver", "liver-seg.dcm")
    if os.geteuid() != 0:
        pytest.fail("The PACS tests need root: they create a private network namespace for Orthanc "
                    "(run them as root, e.g. in the project's container or with sudo).")
    ensure_packages()
    root = tmp_path_factory.mktemp("pacs")
    old_env = {k: os.environ.get(k) for k in ("HOUNSFIELD_CONFIG_DIR", "NO_PROXY", "no_proxy")}
    os.environ["HOUNSFIELD_CONFIG_DIR"] = str(root / "config")
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"  # loopback never via a proxy
    old_ns = netns.enter()
    orthanc = OrthancServer(root / "orthanc", aet=AET, users={USER: PASSWORD},
                            modalities={"hounsfield": (OUR_AET, "127.0.0.1", SCP_PORT),
                                        "getscu": ("GETSCU", "127.0.0.1", 11113)},
                            # an unknown caller may query and ask for a C-MOVE (and meet "unknown destination"),
                            # but not C-GET
                            extra={"DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True})
    _SERVERS.append(orthanc)
    try:
        orthanc.start()
        env = {**os.environ, "TCP_NODELAY": "1"}
        for what in (chest, brain, liver_ct, liver_seg):
            subprocess.run(["storescu", "-R", "-aet", "SEEDER", "-aec", AET, "+sd", "127.0.0.1",
                            str(orthanc.dicom_port), str(what)], env=env, check=True, timeout=300, capture_output=True)
        _write_nodes(orthanc)
        yield PacsEnv(orthanc, root / "config", _study(chest), _study(brain), _study(liver_ct), liver_seg)
    finally:
        orthanc.stop()
        _SERVERS.remove(orthanc)
        netns.leave(old_ns)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def orthanc(pacs_env):
    """The environment with Orthanc running (restarted after a test that stopped or paused it)."""
    pacs_env.orthanc.resume()
    pacs_env.orthanc.start()
    yield pacs_env
    pacs_env.orthanc.resume()
    pacs_env.orthanc.start()


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A fresh user data dir (managed studies folder and study index) for one test."""
    path = tmp_path / "data"
    monkeypatch.setenv("HOUNSFIELD_DATA_DIR", str(path))
    return path


_SERVERS: list[OrthancServer] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing PACS test shows the end of Orthanc's log beside its traceback."""
    report = yield
    if report.failed and _SERVERS:
        for server in _SERVERS:
            report.sections.append((f"Orthanc log ({server.aet})", server.log_tail(40)))
    return report
