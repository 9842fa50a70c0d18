"""Start the real third-party servers the tests need: Azurite (npm) and nginx (Debian).

Both are installed by `make tools` (which `make test` and `.ci/run` run). A missing tool is reported by
`find_*` returning None; the tests skip then, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


AZURITE_FLAGS = ("--silent", "--skipApiVersionCheck", "--disableTelemetry")
"""Telemetry off: Azurite would otherwise try to report to Application Insights from a machine with no network."""


def find_azurite() -> str | None:
    local = ROOT / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Azurite:
    process: subprocess.Popen[bytes]
    port: int
    workspace: Path
    https: bool = False

    @property
    def blob_service_uri(self) -> str:
        """What AzureWebJobsStorage__blobServiceUri names (https, with OAuth on)."""
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.workspace, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def start_azurite(binary: str, *, oauth_tls: tuple[Path, Path] | None = None) -> Azurite:
    """Azurite's blob service; with `oauth_tls` (certificate, key) it serves https and demands Entra-style bearer
    tokens (`--oauth basic`: issuer, audience and lifetime checked, not the signature), as the Functions storage
    account does with shared keys turned off."""
    port = free_port()
    workspace = tempfile.mkdtemp(prefix="azurite-")
    oauth = ["--oauth", "basic", "--cert", str(oauth_tls[0]), "--key", str(oauth_tls[1])] if oauth_tls else []
    process = subprocess.Popen(  # noqa: S603 - our own tool path and arguments
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            workspace,
            *AZURITE_FLAGS,
            *oauth,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return Azurite(process, port, Path(workspace), https=oauth_tls is not None)


@dataclass
class Nginx:
    """A real nginx on loopback that demands a client certificate from the CAs in `bundle`."""

    process: subprocess.Popen[bytes]
    port: int
    prefix: Path
    bundle: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def reload(self) -> None:
        """Re-read the CA bundle, as the ingress controller does when its Secret changes (graceful: HUP)."""
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.prefix, ignore_errors=True)


def start_nginx(binary: str, *, server_cert: Path, server_key: Path, bundle_pem: bytes) -> Nginx:
    prefix = Path(tempfile.mkdtemp(prefix="nginx-"))
    (prefix / "logs").mkdir()
    bundle = prefix / "client-ca.pem"
    bundle.write_bytes(bundle_pem)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {server_cert};
        ssl_certificate_key {server_key};
        ssl_client_certificate {bundle};
        ssl_verify_client on;
        ssl_verify_depth 1;
        location / {{ return 200 "issuer=$ssl_client_i_dn serial=$ssl_client_serial\\n"; }}
    }}
}}
"""
    )
    process = subprocess.Popen(  # noqa: S603 - our own tool path and arguments
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_for_port(port)
    return Nginx(process, port, prefix, bundle)
