"""The few HTTP calls the CLI makes that the SDK has no method for (policy upload,
simulation, keys, grants, confirmations, console sessions): JSON in, JSON out, and a
problem+json answer as :class:`ApiError` with its stable ``code``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from warrantor import __version__
from warrantor.client._errors import problem_document


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.body = status, code, detail, body


class Api:
    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0) -> None:
        headers = {"User-Agent": f"warrantor-cli/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.call("POST", path, json=body if body is not None else {}, headers=headers)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, "UNREACHABLE", f"{self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise error_of(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def error_of(response: httpx.Response) -> ApiError:
    """The problem document's ``code`` and ``detail``, read as the SDK reads them; an answer
    without a code (a proxy's page) is ``HTTP_<status>`` with the start of its text."""
    problem = problem_document(response)
    if "code" in problem:
        return ApiError(response.status_code, str(problem["code"]),
                        str(problem.get("detail") or problem.get("title")), problem)
    return ApiError(response.status_code, f"HTTP_{response.status_code}", response.text[:300], problem or None)
