"""Request-id propagation: taken from X-Request-ID or generated, echoed back."""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from supportdesk.logging import new_request_id, request_id_var

# Accept only tame ids so a client cannot inject newlines or huge values into logs.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger("supportdesk.access")


def incoming_request_id(header: str | None) -> str:
    return header if header and _VALID_ID.match(header) else new_request_id()


class RequestIdMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _start(self, request: HttpRequest) -> None:
        request.started_at = time.perf_counter()  # type: ignore[attr-defined]
        request.request_id = incoming_request_id(request.headers.get("X-Request-ID"))  # type: ignore[attr-defined]
        # Not reset afterwards: Django logs 4xx/5xx after the middleware returns, and each
        # ASGI request runs in its own context, so the value cannot leak to another request.
        request_id_var.set(request.request_id)  # type: ignore[attr-defined]

    def _finish(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        elapsed_ms = round(1000 * (time.perf_counter() - request.started_at), 1)  # type: ignore[attr-defined]
        access_log.info(
            "%s %s %s", request.method, request.path, response.status_code,
            extra={"method": request.method, "path": request.path, "status": response.status_code,
                   "duration_ms": elapsed_ms},
        )
        return response

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        self._start(request)
        return self._finish(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        self._start(request)
        return self._finish(request, await self.get_response(request))
