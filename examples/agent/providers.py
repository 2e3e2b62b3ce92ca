"""Two fake providers on 127.0.0.1, standing in for a bank and a mail service.

Each is a tiny HTTP server on a free loopback port that records every request it accepts,
in memory and, with ``outbox``, as one JSON line in ``<outbox>/<name>.jsonl`` (so a test can
tell exactly which calls reached a provider: a denied or held call must never appear).

    bank = Provider.start("bank", "/transfers", "tr")      # POST /transfers -> 201 {"id": "tr_1", ...}
    mail = Provider.start("mail", "/messages", "msg")      # POST /messages  -> 202 {"id": "msg_1", ...}
    ...
    bank.stop()
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Provider:
    name: str
    path: str
    prefix: str
    outbox: Path | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @classmethod
    def start(cls, name: str, path: str, prefix: str, outbox: Path | None = None) -> Provider:
        provider = cls(name, path, prefix, outbox)
        provider._server = ThreadingHTTPServer(("127.0.0.1", 0), provider._handler())
        threading.Thread(target=provider._server.serve_forever, name=f"fake-{name}", daemon=True).start()
        return provider

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _accept(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.received.append(body)
            record = {"id": f"{self.prefix}_{len(self.received)}", **body}
            if self.outbox is not None:
                self.outbox.mkdir(parents=True, exist_ok=True)
                with (self.outbox / f"{self.name}.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record, sort_keys=True) + "\n")
        return record

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != provider.path:
                    self._answer(404, {"error": "not found"})
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                except ValueError:
                    self._answer(400, {"error": "expected a JSON body"})
                    return
                if not isinstance(body, dict):
                    self._answer(400, {"error": "expected a JSON object"})
                    return
                self._answer(201 if provider.prefix == "tr" else 202, provider._accept(body))

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        return Handler
