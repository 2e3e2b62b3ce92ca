"""Real HTTP servers on 127.0.0.1 free ports for the execute tests: what they saw, and
behaviours an upstream can have (slow, redirecting, resetting, huge, echoing, failing).

Each server is a ``ThreadingHTTPServer`` in a daemon thread of the test process, stopped
with ``shutdown()`` when the test ends; a slow handler waits on an event the test sets, so
no thread outlives its test.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HUGE_BYTES = 5 * 1024 * 1024


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    port: int
    seen: list[Seen] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)  # a request reached a handler
    release: threading.Event = field(default_factory=threading.Event)  # lets /slow answer
    redirect_to: str = "http://127.0.0.1:9/"
    scheme: str = "http"

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def _handler(up: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            up.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            up.arrived.set()
            route = self.path.split("?", 1)[0]
            getattr(self, "_" + route.strip("/").replace("-", "_"), self._ok)()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _ok(self) -> None:
            self._send(200, json.dumps({"ok": True, "path": self.path}).encode(),
                       {"X-Upstream": "yes", "Set-Cookie": "session=abc; HttpOnly"})

        def _created(self) -> None:
            self._send(201, b'{"created": true}')

        def _fail(self) -> None:
            self._send(500, b'{"error": "boom"}')

        def _echo_headers(self) -> None:  # an upstream that echoes what it got, secrets included
            seen = up.seen[-1].headers
            self._send(200, json.dumps(seen).encode(), {"X-Echo-Auth": seen.get("authorization", "")})

        def _redirect(self) -> None:
            self._send(302, b"", {"Location": up.redirect_to})

        def _slow(self) -> None:
            up.release.wait(30)
            self._send(200, b'{"late": true}')

        def _huge(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(HUGE_BYTES // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client stopped reading at its limit and closed

        def _reset(self) -> None:
            """The head and part of the body, then a TCP reset."""
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\npartial")
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

    return Handler


@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    key_pem: bytes
    sha256: str  # hex sha256 of the DER certificate: what a bundle pins


def _name(cn: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca() -> tuple[Any, Any, bytes]:
    """A throwaway CA: (certificate, key, PEM)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key, cert.public_bytes(serialization.Encoding.PEM)


def leaf_for_127(ca: tuple[Any, Any, bytes]) -> Certificate:
    """A server certificate for 127.0.0.1 signed by ``ca``."""
    import datetime
    import hashlib
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_cert, ca_key, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Certificate(cert.public_bytes(serialization.Encoding.PEM), key_pem,
                       hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest())


def serve_certificate(context: ssl.SSLContext, cert: Certificate, directory: Path) -> None:
    """Make ``context`` present ``cert`` to every new handshake."""
    (directory / "leaf.pem").write_bytes(cert.cert_pem)
    (directory / "leaf.key").write_bytes(cert.key_pem)
    context.load_cert_chain(directory / "leaf.pem", directory / "leaf.key")


@contextmanager
def upstream(tls: ssl.SSLContext | None = None) -> Iterator[Upstream]:
    """A server on a free port of 127.0.0.1; with ``tls``, HTTPS with that server context."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    up = Upstream(server.server_address[1], scheme="https" if tls is not None else "http")
    server.RequestHandlerClass = _handler(up)
    thread = threading.Thread(target=server.serve_forever, name=f"upstream-{up.port}", daemon=True)
    thread.start()
    try:
        yield up
    finally:
        up.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
