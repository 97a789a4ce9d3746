"""The operators' endpoint (``[http] listen``): ``/metrics``, ``/healthz``, ``/readyz``, ``/status``.

It runs on the worker's own event loop (aiohttp), so a probe that gets an answer has shown the
loop is not stuck. Nothing here blocks: a scrape reads plain integers. Every JSON answer passes
:func:`~poller.config.redaction.redact_document` (a failure message may quote a URL with a login).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from poller.config.redaction import redact_document
from poller.errors import ConfigError
from poller.observability.health import Probe
from poller.observability.prometheus import CONTENT_TYPE

__all__ = ["OperatorsEndpoint"]

_log = structlog.get_logger("poller.http")


class OperatorsEndpoint:
    """An HTTP server answering the four paths from the callables it is given."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Callable[[], bytes],
        liveness: Callable[[], Probe],
        readiness: Callable[[], Probe],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self._host = host
        self._port = port
        self._metrics = metrics
        self._liveness = liveness
        self._readiness = readiness
        self._status = status
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Listen; a port in use or an address not of this host is a config error naming it."""
        app = web.Application()
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/healthz", self._probe(self._liveness))
        app.router.add_get("/readyz", self._probe(self._readiness))
        app.router.add_get("/status", self._get_status)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise ConfigError(
                f"http.listen: cannot listen on {self._host}:{self._port}: {error.strerror}"
            ) from None
        self._runner = runner
        server = site._server  # aiohttp keeps the bound socket here; port 0 picks one
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        _log.info("operators' endpoint listening", host=self._host, port=self.port)

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _get_status(self, _request: web.Request) -> web.Response:
        return _json(200, self._status())

    @staticmethod
    def _probe(probe: Callable[[], Probe]) -> Callable[[web.Request], Any]:
        async def answer(_request: web.Request) -> web.Response:
            result = probe()
            return _json(200 if result.ok else 503, result.body)

        return answer


def _json(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(redact_document(body), option=orjson.OPT_NON_STR_KEYS, default=str),
        content_type="application/json",
    )
