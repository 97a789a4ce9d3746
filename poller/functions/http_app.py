"""A function that is an HTTP application (``Url = "http://app:8080/events"``).

Each invocation is a POST of the Lambda event JSON, with the request id, the deadline and the
function ARN in Lambda's ``Lambda-Runtime-*`` headers and any configured ``Headers``. A 2xx
answer's body is the function's response (so ``batchItemFailures`` work as usual); any other
status, a refused connection or the Timeout is a function error naming the status and the start
of the body. Connections are pooled and kept alive (aiohttp); ``https`` uses the system's CAs,
or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` as set when the worker starts.

``ReservedConcurrentExecutions`` caps the requests in flight: an invocation that has to wait for
a free slot counts as a throttle, and its Timeout starts once it has one (as a process function's
starts once an environment takes it).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping

import aiohttp
import anyio
import structlog

from poller.config.redaction import redact_text
from poller.engine.invocation import Invocation
from poller.functions.reply import (
    MAX_RESPONSE_BYTES,
    FunctionError,
    Reply,
    Response,
    response_too_large,
    timed_out,
)
from poller.functions.runtime_api import trace_header

__all__ = ["HttpFunction"]

_log = structlog.get_logger("poller.functions")
_BODY_IN_ERRORS = 500
#: Idle connections are closed after this: below the 5 s that common app servers keep them, so
#: poller never sends on a connection the server is closing (a POST is not retried by aiohttp).
_KEEPALIVE_SECONDS = 3.0


class HttpFunction:
    """Invocations POSTed to one URL over a pool of kept-alive connections."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        arn: str,
        headers: Mapping[str, str],
        concurrency: int | None,
    ) -> None:
        self.name = name
        self.url = url
        #: The URL as error messages show it: without a login it may carry.
        self._shown_url = redact_text(url)
        self._arn = arn
        self._headers = dict(headers)
        self._concurrency = concurrency
        self._slots = anyio.Semaphore(concurrency) if concurrency else None
        self._session: aiohttp.ClientSession | None = None

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # aiohttp's own default context is built when aiohttp is imported; one made now
            # reads SSL_CERT_FILE / SSL_CERT_DIR as the worker's environment has them at start.
            # Loading the CAs is blocking file I/O, so it runs in a thread.
            tls: ssl.SSLContext | bool = True
            if self.url.startswith("https://"):
                tls = await anyio.to_thread.run_sync(ssl.create_default_context)
            if self._session is None:  # another first call may have made it meanwhile
                connector = aiohttp.TCPConnector(
                    limit=self._concurrency or 0, keepalive_timeout=_KEEPALIVE_SECONDS, ssl=tls
                )
                self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def call(
        self,
        payload: bytes,
        invocation: Invocation,
        time_limit: float,
        throttled: Callable[[], None],
    ) -> Reply:
        """POST the event; read the answer as Lambda reads a function's response.

        With ReservedConcurrentExecutions, wait for a free slot first (a throttle, outside the
        Timeout).
        """
        if self._slots is None:
            return await self._post(payload, invocation, time_limit)
        if self._slots.value == 0:
            throttled()
        async with self._slots:
            return await self._post(payload, invocation, time_limit)

    async def _post(self, payload: bytes, invocation: Invocation, time_limit: float) -> Reply:
        session = await self._client()
        deadline_ms = int((time.time() + time_limit) * 1000)
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self._arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_header or trace_header(),
        }
        try:
            async with session.post(
                self.url,
                data=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=time_limit),
            ) as answer:
                # ``content.read(n)`` returns what has arrived so far; read to the end.
                body = bytearray()
                async for chunk in answer.content.iter_any():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        return response_too_large(answer.content_length or len(body))
                if 200 <= answer.status < 300:
                    return Response(bytes(body))
                shown = body[:_BODY_IN_ERRORS].decode("utf-8", "replace")
                _log.warning(
                    "HTTP function answered an error",
                    function=self.name,
                    status=answer.status,
                    body=shown,
                )
                return FunctionError(
                    "Function.HttpError",
                    f"{self._shown_url} answered HTTP {answer.status}: {shown}",
                )
        except TimeoutError:
            return timed_out(time_limit)
        except aiohttp.ClientError as error:
            _log.warning("HTTP function unreachable", function=self.name, error=str(error))
            return FunctionError(
                "Function.ConnectionError", redact_text(f"{self._shown_url}: {error}")
            )

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
