"""Settings of the PACS front ends: frozen dataclasses read from YAML, validated by raising ``ConfigError``.

YAML keys are the field names; unknown keys are refused (a typo must not silently leave a
security setting at its default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from calcdx.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Peer:
    """A remote DICOM application entity: ``AET@host:port``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, argument: str = "destination") -> Peer:
        """Parse ``AET@host:port``.

        Raises:
            ConfigError: not of that form, or the AE title / port is invalid.
        """
        try:
            aet, rest = text.split("@", 1)
            host, port = rest.rsplit(":", 1)
            peer = cls(aet, host, int(port))
        except ValueError as exc:
            raise ConfigError(f'Argument "{argument}" should be AET@host:port, got {text!r}') from exc
        if not 1 <= len(peer.ae_title) <= 16 or not peer.host or not 0 < peer.port < 65536:
            raise ConfigError(f'Argument "{argument}" should be AET@host:port, got {text!r}')
        return peer


def _load_yaml(cls: type[T], path: str | Path, overrides: dict[str, Any]) -> T:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the settings file: {exc}", path=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("the settings file should hold a mapping of setting: value", path=str(path))
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}", path=str(path))
    data.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("allowed", "dicomweb_sources"):
        if key in data and data[key] is not None:
            data[key] = tuple(data[key])
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"invalid settings: {exc}", path=str(path)) from exc


@dataclass(frozen=True)
class NodeConfig:
    """Settings of the DICOM node (``calcdx serve dicom``); times in seconds, sizes in bytes."""

    ae_title: str = "CALCDX"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed: tuple[str, ...] = ()  # "AET" or "AET@host"; empty = refuse everyone
    destination: str = ""  # AET@host:port for the results; empty = keep them in out_dir only
    spool_dir: str = "calcdx-spool"
    out_dir: str = "calcdx-results"
    model_dir: str | None = None
    study_idle_seconds: float = 5.0
    max_associations: int = 4
    max_pdu_bytes: int = 16 * 1024 * 1024
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    connection_timeout: float = 10.0
    send_retries: int = 5
    send_backoff_seconds: float = 1.0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None  # clients must present a certificate signed by this CA
    log_patient_data: bool = False

    def __post_init__(self) -> None:
        if not 1 <= len(self.ae_title) <= 16:
            raise ConfigError(f'Argument "ae_title" should have 1-16 characters, got {self.ae_title!r}')
        if not 0 <= self.port < 65536:
            raise ConfigError(f'Argument "port" should be a TCP port, got {self.port}')
        if self.destination:
            Peer.parse(self.destination)
        for entry in self.allowed:
            name = entry.partition("@")[0]
            if not 1 <= len(name) <= 16:
                raise ConfigError(f'Argument "allowed" entries should be AET or AET@host, got {entry!r}')
        for name in ("study_idle_seconds", "acse_timeout", "dimse_timeout", "network_timeout",
                     "connection_timeout", "send_backoff_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f'Argument "{name}" should be a positive number of seconds')
        if self.max_associations < 1 or self.send_retries < 1:
            raise ConfigError('Arguments "max_associations" and "send_retries" should be at least 1')
        if not 4096 <= self.max_pdu_bytes <= 256 * 1024 * 1024:
            raise ConfigError(f'Argument "max_pdu_bytes" should be 4096..268435456, got {self.max_pdu_bytes}')
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError('Arguments "tls_cert" and "tls_key" go together')
        if self.tls_ca is not None and self.tls_cert is None:
            raise ConfigError('Argument "tls_ca" needs "tls_cert" and "tls_key"')

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> NodeConfig:
        """Read a YAML file; ``overrides`` that are not None win (command-line flags).

        Raises:
            ConfigError: unreadable file, unknown key or invalid value.
        """
        return _load_yaml(cls, path, overrides)

    def is_allowed(self, aet: str, host: str) -> bool:
        """Whether calling AE title ``aet`` from ``host`` is on the allow-list."""
        for entry in self.allowed:
            name, _, entry_host = entry.partition("@")
            if name == aet and (not entry_host or entry_host == host):
                return True
        return False


@dataclass(frozen=True)
class WebConfig:
    """Settings of the DICOMweb service (``calcdx serve web``); sizes in bytes, times in seconds.

    ``token`` (or the file ``token_file``, or the environment variable ``CALCDX_TOKEN``) is
    the bearer token every request but ``/health`` and the OpenAPI document must carry.
    ``dicomweb_sources`` lists the DICOMweb base URLs that analysis by reference may pull from
    (empty: analysis by reference is refused), so the service cannot be used to reach
    arbitrary hosts.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    token_file: str | None = None
    work_dir: str = "calcdx-web"
    model_dir: str | None = None
    max_upload_bytes: int = 512 * 1024 * 1024
    max_instances: int = 500
    dicomweb_sources: tuple[str, ...] = ()
    dicomweb_token: str | None = None  # bearer token calcdx sends to those sources, if they need one
    request_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f'Argument "port" should be a TCP port, got {self.port}')
        if self.max_upload_bytes < 1024 or self.max_instances < 1:
            raise ConfigError('Arguments "max_upload_bytes" (>= 1024) and "max_instances" (>= 1) are too small')
        for url in self.dicomweb_sources:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f'Argument "dicomweb_sources" should hold http(s) URLs, got {url!r}')

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> WebConfig:
        """Read a YAML file; ``overrides`` that are not None win.  Raises ConfigError."""
        return _load_yaml(cls, path, overrides)

    def resolved_token(self) -> str:
        """The bearer token (``token``, ``token_file`` or ``$CALCDX_TOKEN``).

        Raises:
            ConfigError: none is set, or it is shorter than 16 characters.
        """
        token = self.token
        if token is None and self.token_file:
            try:
                token = Path(self.token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the token file: {exc.strerror}", path=self.token_file) from exc
        token = token or os.environ.get("CALCDX_TOKEN")
        if not token or len(token) < 16:
            raise ConfigError('a bearer token of at least 16 characters is required ("token", "token_file" '
                              "or $CALCDX_TOKEN); the web service never runs without authentication")
        return token

    def source_allowed(self, url: str) -> bool:
        """Whether ``url`` is one of ``dicomweb_sources`` (exact base URL, trailing slash ignored)."""
        return url.rstrip("/") in {s.rstrip("/") for s in self.dicomweb_sources}
