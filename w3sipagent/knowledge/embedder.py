"""``POST {base_url}/embeddings`` with httpx against any OpenAI-compatible endpoint.

Texts go in batches; a 429 or 5xx is retried after ``retry-after`` (capped) a few times;
any other failure is a :class:`~w3sipagent.knowledge.sources.KnowledgeError` naming the
status and the service's message, never the key.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from w3sipagent.knowledge.sources import KnowledgeError

__all__ = ["Embedder", "Vectors"]

Vectors = npt.NDArray[np.float32]
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_WAIT = 20.0


class Embedder:
    """Embeds texts with one model at one endpoint; vectors come back L2-normalised."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        *,
        dimensions: int | None = None,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
        batch_size: int = 64,
        retries: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self._key = api_key
        self.dimensions = dimensions
        self.timeout = timeout
        self._http = http
        self.batch_size = batch_size
        self.retries = retries
        self._sleep = sleep
        self.requests = 0
        """Requests sent (a test can see that unchanged files cost none)."""

    async def embed(self, texts: list[str]) -> Vectors:
        """One row per text, in order."""
        if not texts:
            return np.zeros((0, self.dimensions or 0), dtype=np.float32)
        own = self._http is None
        client = self._http or httpx.AsyncClient(timeout=self.timeout)
        try:
            rows: list[Vectors] = []
            for i in range(0, len(texts), self.batch_size):
                rows.append(await self._batch(client, texts[i : i + self.batch_size]))
            return np.concatenate(rows)
        finally:
            if own:
                await client.aclose()

    async def _batch(self, client: httpx.AsyncClient, texts: list[str]) -> Vectors:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "base64"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        headers = {"Authorization": f"Bearer {self._key}"}
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                resp = await client.post(self.url, json=body, headers=headers, timeout=self.timeout)
            except httpx.TimeoutException:
                raise KnowledgeError(
                    f"embeddings: {self.url} timed out after {self.timeout:g} s"
                ) from None
            except httpx.HTTPError as exc:
                raise KnowledgeError(
                    f"embeddings: {self.url} unreachable ({type(exc).__name__})"
                ) from None
            if resp.status_code in RETRY_STATUS and attempt < self.retries:
                await self._sleep(_retry_after(resp, attempt))
                continue
            if resp.status_code != 200:
                raise KnowledgeError(
                    f"embeddings: HTTP {resp.status_code} from {self.url}: {_message(resp)}"
                )
            return _vectors(resp, len(texts))
        raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(resp: httpx.Response, attempt: int) -> float:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = resp.headers.get(name)
        if value is not None:
            try:
                return float(min(MAX_RETRY_WAIT, max(0.0, float(value) * scale)))
            except ValueError:
                pass
    return min(MAX_RETRY_WAIT, 0.5 * 2.0**attempt)


def _message(resp: httpx.Response) -> str:
    try:
        err = resp.json()["error"]
        return str(err.get("message") or err)[:300]
    except (ValueError, KeyError, TypeError, AttributeError):
        return resp.text[:200]


def _vectors(resp: httpx.Response, n: int) -> Vectors:
    try:
        data = sorted(resp.json()["data"], key=lambda d: d["index"])
        rows = []
        for d in data:
            emb = d["embedding"]
            if isinstance(emb, str):
                rows.append(np.frombuffer(base64.b64decode(emb), dtype="<f4"))
            else:
                rows.append(np.asarray(emb, dtype=np.float32))
        out = np.vstack(rows).astype(np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise KnowledgeError(f"embeddings: malformed answer ({type(exc).__name__})") from None
    if out.shape[0] != n:
        raise KnowledgeError(f"embeddings: {out.shape[0]} vectors for {n} texts")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Vectors = (out / norms).astype(np.float32)
    return result
