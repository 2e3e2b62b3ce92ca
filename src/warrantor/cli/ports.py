"""Whether ``warrantor serve`` can listen where it was asked to, said in one line.

uvicorn reports a taken port only after start-up work (migrations, keys, the demo tenant)
and in several log lines; ``serve`` asks first, by binding the address the way uvicorn
will (``SO_REUSEADDR``, the same family) and letting go at once. Another program may still
take the port in between: then uvicorn's own message stands.
"""

from __future__ import annotations

import errno
import socket


def listen_problem(host: str, port: int) -> str | None:
    """``None`` if ``host:port`` can be bound now, else one line saying why and what to do."""
    where = f"port {port} on {host}"
    pick = "pick another with --port N (or WARRANTOR_PORT=N; `make run PORT=N`)"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"cannot listen on {where}: the address does not resolve ({exc}); pass --host with a local address"
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"{where} is already in use (another server is listening there); {pick}"
        if exc.errno == errno.EACCES:
            return f"cannot listen on {where}: permission denied (ports below 1024 need privileges); {pick}"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"cannot listen on {where}: {host} is not an address of this machine; pass --host with one"
        return f"cannot listen on {where}: {exc.strerror or exc}; {pick}"
    return None
