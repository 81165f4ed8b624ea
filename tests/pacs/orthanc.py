"""Debian's Orthanc as a throw-away test PACS: install (when missing), configure, start, stop.

Each ``OrthancServer`` has its own configuration and storage folder and is stopped by its
process id.  It must be started from a thread inside a private network namespace (see
``netns``): Orthanc listens on every interface and has no option to bind to loopback alone.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
# Debian package -> a file that proves it is installed.
PACKAGES = {"orthanc": ORTHANC, "orthanc-dicomweb": DICOMWEB_PLUGIN, "dcmtk": "/usr/bin/getscu"}


def missing_packages(packages=PACKAGES) -> list[str]:
    return [p for p, proof in packages.items() if not os.path.exists(proof)]


def ensure_packages(packages=PACKAGES) -> None:
    """apt-get install the packages that are missing (needs root and the network).

    Services are kept from starting during the installation (policy-rc.d, the Debian way), so
    installing Orthanc does not leave a system-wide Orthanc listening on the host's network.
    """
    missing = missing_packages(packages)
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"the Debian packages {', '.join(missing)} are missing and installing them needs root; "
                           f"run: sudo apt-get install {' '.join(missing)}")
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=True, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    still = missing_packages(packages)
    if still:
        raise RuntimeError(f"apt-get did not install {', '.join(still)}")


def _die_with_parent() -> None:
    """In the child: be killed when the thread that started us ends (pytest killed, crashed...)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class OrthancServer:
    """One Orthanc process with its own folder; ``modalities`` maps name -> (AET, host, port).

    Start it from a thread that outlives it (pytest's main thread): it is killed when that thread ends.
    """

    def __init__(self, root: Path, *, aet: str = "ORTHANC", dicom_port: int = 4242, http_port: int = 8042,
                 modalities: dict[str, tuple[str, str, int]] | None = None,
                 users: dict[str, str] | None = None, extra: dict | None = None):
        self.root = Path(root)
        self.aet, self.dicom_port, self.http_port = aet, dicom_port, http_port
        self.modalities = modalities or {}
        self.users = users or {}
        self.extra = extra or {}
        self.proc: subprocess.Popen | None = None
        self.config_dir = self.root / "config"
        self.storage = self.root / "storage"
        self.log_path = self.root / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        cfg = {
            "Name": f"hounsfield-test-{self.aet}",
            "StorageDirectory": str(self.storage), "IndexDirectory": str(self.storage),
            "StorageCompression": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "OrthancExplorerEnabled": False, "WebDavEnabled": False,
            "AuthenticationEnabled": bool(self.users), "RegisteredUsers": self.users,
            "DicomServerEnabled": True, "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,  # a wrong called AE title is rejected, as hospital PACS do
            "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "DicomScpTimeout": 30, "DicomScuTimeout": 10,
            "UnknownSopClassAccepted": True,
            "SaveJobs": False, "ConcurrentJobs": 2, "StableAge": 1,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }
        cfg.update(self.extra)
        return cfg

    def env(self) -> dict:
        # DCMTK (Orthanc's DICOM layer) leaves Nagle's algorithm on unless TCP_NODELAY=1: each
        # C-STORE then waits ~40 ms for a delayed ACK on loopback (9 s instead of 2 s for 141 slices).
        return {**os.environ, "TCP_NODELAY": "1"}

    def start(self, timeout: float = 30.0) -> None:
        if self.alive:
            return
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "orthanc.json").write_text(json.dumps(self.config(), indent=2))
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            verbose = ["--verbose"] if os.environ.get("HOUNSFIELD_ORTHANC_VERBOSE") else []
            self.proc = subprocess.Popen([ORTHANC, *verbose, f"{self.config_dir}/"], cwd=self.root, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=self.env(), preexec_fn=_die_with_parent)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with status {self.proc.returncode} at start:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not become ready within {timeout:.0f} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        # Orthanc starts its DICOM server before its HTTP server, so an answer on HTTP means both are
        # up.  No bare TCP probe of the DICOM port: a connection that never sends an association
        # request can hold Orthanc's (single) association-accepting loop for a while.
        try:
            self.rest("/system", timeout=1.0)
            return True
        except (OSError, urllib.error.URLError):
            return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.proc.pid, sig)

    def _all_threads(self, states: str) -> bool:
        try:
            tasks = os.listdir(f"/proc/{self.proc.pid}/task")
            return all(open(f"/proc/{self.proc.pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()[0] in states
                       for t in tasks)
        except OSError:
            return True  # gone

    def pause(self) -> None:
        """Freeze it (SIGSTOP), as a hung server; returns once every thread has stopped."""
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while self.alive and not self._all_threads("Tt") and time.monotonic() < deadline:
            time.sleep(0.005)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """Stop it the hard way, as a crash or a pulled cable would."""
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive:
            return
        self.resume()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def wipe(self) -> None:
        """Stop and forget every stored instance."""
        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)

    def delete(self, uid: str) -> None:
        """Delete the study, series or instance with this DICOM UID (test clean-up)."""
        for found in self.rest("/tools/lookup", "POST", data=uid.encode()):
            self.rest(found["Path"], "DELETE")

    def rest(self, path: str, method: str = "GET", timeout: float = 10.0, data: bytes | None = None):
        req = urllib.request.Request(self.url + path, method=method, data=data)
        if self.users:
            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
        with opener.open(req, timeout=timeout) as rsp:
            body = rsp.read()
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:  # metadata and a few other routes answer plain text
            return body.decode()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
