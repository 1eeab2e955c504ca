"""POSTing the CDR JSON to a tenant's webhook at call end, in the background.

:meth:`CdrWebhookPoster.submit` returns at once (the call's teardown never waits); a task
POSTs the CDR with ``Content-Type: application/json`` and ``Idempotency-Key: <call id>``,
retrying network errors, timeouts, 5xx, 408 and 429 with exponential backoff
(``backoff``, doubled each time, at most ``backoff_max``) up to ``attempts`` tries. Other 4xx
answers are final. :meth:`CdrWebhookPoster.close` waits for pending posts (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from w3sipagent.errors import ConfigError
from w3sipagent.records.cdr import CallRecord
from w3sipagent.tenants.models import CdrWebhookConfig
from w3sipagent.tenants.secrets import resolve_header

log = logging.getLogger("w3sipagent.records.webhook")

RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What happened to one CDR post."""

    call_id: str
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class CdrWebhookPoster:
    """Posts CDRs to webhooks with retries, off the call's path."""

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        close_timeout: float = 30.0,
        user_agent: str = "w3sipagent",
    ) -> None:
        self._client = client
        self._own_client = client is None
        self._environ = environ
        self.close_timeout = close_timeout
        self.user_agent = user_agent
        self._tasks: set[asyncio.Task[WebhookResult]] = set()
        self.delivered = 0
        self.failed = 0

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    @property
    def pending(self) -> int:
        """Posts not finished yet."""
        return len(self._tasks)

    def submit(self, cdr: CallRecord, config: CdrWebhookConfig) -> asyncio.Task[WebhookResult]:
        """Start posting ``cdr`` to ``config.url`` in the background; returns immediately."""
        body = cdr.model_dump_json().encode()
        task = asyncio.create_task(
            self.post(cdr.call_id, body, config), name=f"cdr-webhook-{cdr.call_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def post(self, call_id: str, body: bytes, config: CdrWebhookConfig) -> WebhookResult:
        """POST ``body`` with retries; never raises (the result says what happened)."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            "Idempotency-Key": call_id,
        }
        try:
            auth = resolve_header(
                config.auth_env,
                config.auth_header,
                config.auth_prefix,
                what="cdr_webhook.auth_env",
                environ=self._environ,
            )
        except ConfigError as e:
            self.failed += 1
            log.error("CDR webhook for call %s not sent: %s", call_id, e)
            return WebhookResult(call_id, False, 0, error=str(e))
        if auth is not None:
            headers[auth[0]] = auth[1]
        delay = config.backoff
        status: int | None = None
        error: str | None = None
        for attempt in range(1, config.attempts + 1):
            try:
                r = await self._http().post(
                    config.url, content=body, headers=headers, timeout=config.timeout
                )
                status, error = r.status_code, None
                if 200 <= status < 300:
                    self.delivered += 1
                    log.debug("CDR webhook %s delivered (%d, attempt %d)", call_id, status, attempt)
                    return WebhookResult(call_id, True, attempt, status)
                error = f"HTTP {status}"
                if 400 <= status < 500 and status not in RETRY_STATUSES:
                    break
            except httpx.TimeoutException:
                status, error = None, f"timeout after {config.timeout:g}s"
            except httpx.HTTPError as e:
                status, error = None, f"{type(e).__name__}: {str(e)[:200]}"
            if attempt < config.attempts:
                log.info(
                    "CDR webhook %s attempt %d failed (%s); retry in %.2fs",
                    call_id,
                    attempt,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, config.backoff_max)
        self.failed += 1
        log.warning("CDR webhook %s to %s failed: %s", call_id, config.url, error)
        return WebhookResult(call_id, False, attempt, status, error)

    async def close(self) -> None:
        """Wait for pending posts up to ``close_timeout``, cancel the rest, close the client."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self.close_timeout)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
