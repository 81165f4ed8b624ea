"""PACS nodes and our own DICOM identity, kept in a JSON settings file.

The file is ``pacs.json`` in the user config directory (``HOUNSFIELD_CONFIG_DIR`` overrides it,
as tests do), written atomically and readable by its owner only (it may hold passwords and
tokens)::

    {"local": {"ae_title": "HOUNSFIELD", "storage_port": 11112},
     "nodes": [{"name": "pacs", "protocol": "dimse", "ae_title": "ORTHANC", "host": "10.0.0.5",
                "port": 4242, "retrieve_method": "C-GET", "tls": {"enabled": false}},
               {"name": "web", "protocol": "dicomweb", "url": "https://pacs/dicom-web",
                "auth": "basic", "username": "reader", "password": "..."}]}
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields

from viewer.core.errors import HounsfieldError
from viewer.paths import config_dir

PROTOCOLS = ("dimse", "dicomweb")
DIMSE_METHODS = ("C-GET", "C-MOVE")
WEB_METHODS = ("WADO-RS",)
AUTH_KINDS = ("none", "basic", "bearer")


def settings_path() -> str:
    return os.path.join(config_dir(), "pacs.json")


def check_ae_title(title: str, what: str) -> str:
    if not title or len(title) > 16 or "\\" in title or not title.isascii() or not title.strip() \
            or any(not c.isprintable() for c in title):
        raise HounsfieldError(f"{what} '{title}' is not a valid AE title; use 1 to 16 plain ASCII characters.")
    return title


def _check_port(port, what: str) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise HounsfieldError(f"{what} {port!r} is not a valid TCP port; use a number from 1 to 65535.")
    return port


@dataclass
class TlsSettings:
    """DICOM TLS for a DIMSE node.  Empty file names mean: system CAs, no client certificate."""

    enabled: bool = False
    ca_file: str = ""  # trusted CA certificates (PEM) that signed the server's certificate
    cert_file: str = ""  # our client certificate (PEM), when the server asks for one
    key_file: str = ""  # its private key
    verify: bool = True  # check the server's certificate and host name


@dataclass
class PacsNode:
    """One PACS: a DIMSE peer (AE title, host, port) or a DICOMweb service (base URL)."""

    name: str
    protocol: str = "dimse"
    # DIMSE
    ae_title: str = ""  # the server's (called) AE title
    host: str = ""
    port: int = 104
    retrieve_method: str = "C-GET"  # C-GET or C-MOVE (DIMSE), WADO-RS (DICOMweb)
    tls: TlsSettings = field(default_factory=TlsSettings)
    # DICOMweb
    url: str = ""  # base URL, e.g. https://pacs.example.org/dicom-web
    auth: str = "none"  # none, basic or bearer
    username: str = ""
    password: str = ""
    token: str = ""
    # both
    timeout: float = 30.0  # seconds without an answer before giving up

    def __post_init__(self):
        if isinstance(self.tls, dict):
            self.tls = TlsSettings(**{k: v for k, v in self.tls.items() if k in _TLS_KEYS})

    @property
    def is_dicomweb(self) -> bool:
        return self.protocol == "dicomweb"

    def describe(self) -> str:
        """Where it is, without secrets: 'ORTHANC@10.0.0.5:4242' or the URL."""
        return self.url if self.is_dicomweb else f"{self.ae_title}@{self.host}:{self.port}"

    def validate(self) -> PacsNode:
        if not self.name or not self.name.strip():
            raise HounsfieldError("A PACS node needs a name.")
        if self.protocol not in PROTOCOLS:
            raise HounsfieldError(f"PACS node '{self.name}' has protocol '{self.protocol}'; use dimse or dicomweb.")
        if not isinstance(self.timeout, (int, float)) or not 0 < self.timeout <= 3600:
            raise HounsfieldError(f"PACS node '{self.name}' has time-out {self.timeout!r}; use 1 to 3600 seconds.")
        if self.is_dicomweb:
            if not self.url.startswith(("http://", "https://")):
                raise HounsfieldError(f"PACS node '{self.name}' needs a DICOMweb URL starting with http:// or "
                                      "https://.")
            if self.retrieve_method not in WEB_METHODS:
                self.retrieve_method = "WADO-RS"
            if self.auth not in AUTH_KINDS:
                raise HounsfieldError(f"PACS node '{self.name}' has authentication '{self.auth}'; use none, basic "
                                      "or bearer.")
            if self.auth == "basic" and not self.username:
                raise HounsfieldError(f"PACS node '{self.name}' uses basic authentication but has no user name.")
            if self.auth == "bearer" and not self.token:
                raise HounsfieldError(f"PACS node '{self.name}' uses bearer authentication but has no token.")
        else:
            check_ae_title(self.ae_title, f"The AE title of PACS node '{self.name}',")
            if not self.host:
                raise HounsfieldError(f"PACS node '{self.name}' needs a host name or address.")
            _check_port(self.port, f"PACS node '{self.name}' has port")
            if self.retrieve_method not in DIMSE_METHODS:
                raise HounsfieldError(f"PACS node '{self.name}' retrieves by '{self.retrieve_method}'; use C-GET "
                                      "or C-MOVE.")
        return self

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PacsNode:
        return cls(**{k: v for k, v in data.items() if k in _NODE_KEYS})


_TLS_KEYS = {f.name for f in fields(TlsSettings)}
_NODE_KEYS = {f.name for f in fields(PacsNode)}


@dataclass
class LocalAE:
    """Our own DICOM identity: the AE title we call with, and where our Storage SCP listens."""

    ae_title: str = "HOUNSFIELD"
    storage_port: int = 11112

    def validate(self) -> LocalAE:
        check_ae_title(self.ae_title, "Our own AE title")
        _check_port(self.storage_port, "Our storage port")
        return self


@dataclass
class PacsSettings:
    local: LocalAE = field(default_factory=LocalAE)
    nodes: list[PacsNode] = field(default_factory=list)
    path: str = ""  # where it was loaded from / is saved to

    def node(self, name: str) -> PacsNode:
        for n in self.nodes:
            if n.name == name:
                return n
        known = ", ".join(n.name for n in self.nodes) or "none yet"
        raise HounsfieldError(f"There is no PACS node named '{name}' (configured: {known}); add it with "
                              "'hounsfield pacs node add'.")

    def add(self, node: PacsNode, replace: bool = False) -> None:
        node.validate()
        for i, n in enumerate(self.nodes):
            if n.name == node.name:
                if not replace:
                    raise HounsfieldError(f"A PACS node named '{node.name}' exists already; remove it first or "
                                          "choose another name.")
                self.nodes[i] = node
                return
        self.nodes.append(node)

    def remove(self, name: str) -> None:
        self.node(name)
        self.nodes = [n for n in self.nodes if n.name != name]

    @classmethod
    def load(cls, path: str | None = None) -> PacsSettings:
        path = path or settings_path()
        if not os.path.exists(path):
            return cls(path=path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            local = LocalAE(**{k: v for k, v in data.get("local", {}).items() if k in ("ae_title", "storage_port")})
            nodes = [PacsNode.from_json(d) for d in data.get("nodes", [])]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise HounsfieldError(f"The PACS settings file {path} could not be read ({type(exc).__name__}); fix "
                                  "or delete it.") from exc
        return cls(local, nodes, path)

    def save(self, path: str | None = None) -> str:
        self.local.validate()
        for n in self.nodes:
            n.validate()
        path = path or self.path or settings_path()
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        text = json.dumps({"local": asdict(self.local), "nodes": [n.to_json() for n in self.nodes]}, indent=2)
        fd, tmp = tempfile.mkstemp(prefix=".pacs-", suffix=".json", dir=folder)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.path = path
        return path
