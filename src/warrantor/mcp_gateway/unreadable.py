"""Answering the requests the MCP SDK's stdio transport cannot read, instead of dropping them.

The SDK reads each stdio line with pydantic-core's JSON parser, which refuses text nested
deeper than 200 levels of arrays and objects (the message itself, ``params`` and
``arguments`` count, so a tool argument can nest about 197). The transport hands such a line
on as an exception, and the SDK's dispatcher only debug-logs it: the request is never
answered, and a client that waits for its answer (the SDK's own client has no default
timeout) hangs. :class:`AnsweringReader` wraps the transport's read stream and answers each
unreadable request itself with a JSON-RPC ``-32700`` parse error carrying the request's own
id, which is what the SDK's Streamable HTTP transport answers for the same text.

The id is found by :func:`top_level_members`, which reads only the scalar members of the
message's top-level object and skips every nested value without parsing it, so no depth of
nesting can exhaust a parser or a stack; a line with no readable ``id`` and ``method`` (a
notification, a response, not JSON at all) is logged and dropped, as before. Nothing here
ever parses the unreadable arguments: the gateway authorizes and forwards only what the
SDK itself parsed, so no second parser can read a message differently.
"""

from __future__ import annotations

import json
import logging
import re
from types import TracebackType
from typing import Any

import anyio
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from mcp_types import PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError

log = logging.getLogger(__name__)

# A string literal (to its closing quote or to the end of the text, so an unterminated one
# is not rescanned from every quote inside it: linear) or one bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)|[\[\]{}]', re.DOTALL)
_COLON = re.compile(r"\s*:\s*")
_DECODER = json.JSONDecoder()


def top_level_members(text: str, names: frozenset[str]) -> dict[str, Any]:
    """The members ``names`` of the top-level JSON object in ``text`` whose values are scalars
    (string, number, true, false, null), read without parsing any nested value."""
    found: dict[str, Any] = {}
    depth = 0
    for token in _TOKEN.finditer(text):
        literal = token.group()
        if literal in ("[", "{"):
            depth += 1
        elif literal in ("]", "}"):
            depth -= 1
        elif depth == 1 and (colon := _COLON.match(text, token.end())) is not None:
            if text[colon.end():colon.end() + 1] in ("[", "{", ""):
                continue  # a nested value: its brackets are counted as they come
            try:
                name = json.loads(literal)
                value, _ = _DECODER.raw_decode(text, colon.end())
            except ValueError:
                continue
            if name in names:
                found[name] = value
    return found


def _unreadable_line(exc: Exception) -> tuple[str, str] | None:
    """(the line, why) for the transport's "this line is not JSON it can read" error."""
    if not isinstance(exc, ValidationError):
        return None
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid" and isinstance(error.get("input"), str):
            return error["input"], str(error["msg"])
    return None


class AnsweringReader:
    """The transport's read stream, less the lines it could not read; each request among them
    is answered on ``write`` with a parse error for its id (see the module docstring)."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], write: WriteStream[SessionMessage]) -> None:
        self._inner = inner
        self._write = write

    @property
    def last_context(self) -> Any:
        """The sender context of the last item (the SDK's context-aware streams carry it)."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception) or not await self._answer(item):
                return item

    async def _answer(self, exc: Exception) -> bool:
        """Answer the request ``exc`` failed to read; False if it is not an unreadable line."""
        unreadable = _unreadable_line(exc)
        if unreadable is None:
            return False
        line, why = unreadable
        members = top_level_members(line, frozenset({"id", "method"}))
        request_id, method = members.get("id"), members.get("method")
        if isinstance(request_id, bool) or not isinstance(request_id, str | int) or not isinstance(method, str):
            log.warning("dropped a message the MCP transport could not read (no request id): %s", why)
            return True
        log.warning("answered an unreadable %s request (id %r) with a parse error: %s", method[:100], request_id, why)
        message = f"Parse error: {why}"
        if "recursion limit" in why:
            message += " (the gateway reads messages nested at most 200 levels deep)"
        await self._write.send(SessionMessage(JSONRPCError(
            jsonrpc="2.0", id=request_id, error=ErrorData(code=PARSE_ERROR, message=message))))
        return True

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> AnsweringReader:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AnsweringReader:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()
