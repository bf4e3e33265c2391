"""``/readyz`` that says why: BentoML's own probe answers a bare 503 while a worker is not ready."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serving.errors import not_ready_response


class ReadinessMiddleware:
    """Answer ``/readyz`` with 503 and ``not_ready()``'s reason while it returns one."""

    def __init__(self, app: Callable[..., Any], not_ready: Callable[[], str | None]) -> None:
        self.app = app
        self.not_ready = not_ready

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "/").rstrip("/") == "/readyz":
            reason = self.not_ready()
            if reason is not None:
                await not_ready_response(reason)(scope, receive, send)
                return
        await self.app(scope, receive, send)
