"""Any OpenAI-compatible ``/v1/embeddings`` endpoint: OpenAI, Ollama, vLLM, llama.cpp server...

Standard library only (``urllib``): batching, a timeout per request, and retries with exponential
backoff on the failures that are worth retrying (connection errors, timeouts, 408, 409, 429, 5xx).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..exceptions import EmbeddingError, InvalidEmbedderError
from .base import BaseEmbedder, Vectors

__all__ = ["OpenAICompatibleEmbedder"]

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAICompatibleEmbedder(BaseEmbedder):
    """``OPTIONS``:

    - ``base_url``: up to and including ``/v1``, e.g. ``http://localhost:11434/v1`` (required);
    - ``model``: the model name the server knows (required);
    - ``dimensions``: the size of its vectors (required: columns and indexes are sized by it);
    - ``api_key`` or ``api_key_env`` (the name of an environment variable holding it);
    - ``send_dimensions``: also send ``dimensions`` in the request, for models that shorten their
      output on demand (OpenAI's text-embedding-3-*), default False;
    - ``batch_size`` (64 texts a request), ``timeout`` (30 seconds), ``max_retries`` (3),
      ``backoff`` (0.5 seconds, doubled after each retry), ``headers`` (extra HTTP headers).
    """

    backend_name = "openai"

    def __init__(
        self,
        *,
        alias: str = "default",
        base_url: str = "",
        model: str = "",
        dimensions: int = 0,
        api_key: str = "",
        api_key_env: str = "",
        send_dimensions: bool = False,
        batch_size: int = 64,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        problems = []
        if not base_url.startswith(("http://", "https://")):
            problems.append("'base_url' must be an http(s) URL such as http://localhost:11434/v1")
        if not model:
            problems.append("'model' is required")
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            problems.append("'dimensions' must be the positive size of the model's vectors")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            problems.append("'batch_size' must be a positive whole number")
        if not (isinstance(timeout, int | float) and timeout > 0):
            problems.append("'timeout' must be a positive number of seconds")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            problems.append("'max_retries' must be a whole number >= 0")
        if problems:
            raise InvalidEmbedderError(
                f"Embedder {alias!r} (OpenAICompatibleEmbedder): {'; '.join(problems)}."
            )
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self._dimensions = dimensions
        self.api_key = api_key or (os.environ.get(api_key_env, "") if api_key_env else "")
        self.send_dimensions = send_dimensions
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.headers = dict(headers or {})

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def model_name(self) -> str:
        return self.model

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        out = np.empty((len(texts), self._dimensions), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            out[start : start + len(batch)] = self._request(batch)
        return out

    def _request(self, texts: list[str]) -> Vectors:
        payload: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.send_dimensions:
            payload["dimensions"] = self._dimensions
        headers = {"Content-Type": "application/json", **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = json.dumps(payload).encode()
        attempt = 0
        while True:
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                try:
                    answer = json.loads(raw)
                except ValueError as e:
                    # An HTML page from a proxy, a body cut short: a fault of the way there,
                    # worth another try, then an EmbeddingError, never a raw JSONDecodeError.
                    if attempt >= self.max_retries:
                        raise EmbeddingError(
                            f"Embedder {self.alias!r}: {self.url} answered with something that "
                            f"is not JSON ({raw[:80]!r}) after {attempt + 1} attempt(s).",
                            transient=True,
                        ) from e
                else:
                    return self._parse(answer, len(texts))
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                if e.code not in RETRY_STATUSES or attempt >= self.max_retries:
                    raise EmbeddingError(
                        f"Embedder {self.alias!r}: {self.url} answered HTTP {e.code}"
                        f"{': ' + detail if detail else ''} (after {attempt + 1} attempt(s)).",
                        transient=e.code in RETRY_STATUSES,
                    ) from e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt >= self.max_retries:
                    reason = getattr(e, "reason", e)
                    raise EmbeddingError(
                        f"Embedder {self.alias!r}: no answer from {self.url} ({reason}) after "
                        f"{attempt + 1} attempt(s) with a {self.timeout:g} s timeout.",
                        transient=True,
                    ) from e
            time.sleep(self.backoff * (2**attempt))
            attempt += 1

    def _parse(self, answer: Any, count: int) -> Vectors:
        try:
            items = sorted(answer["data"], key=lambda item: item["index"])
            if [item["index"] for item in items] != list(range(count)):
                raise ValueError(
                    f"indices {[item['index'] for item in items][:10]}, expected 0..{count - 1}"
                )
            vectors = np.asarray([item["embedding"] for item in items], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as e:
            raise EmbeddingError(
                f"Embedder {self.alias!r}: {self.url} did not answer with OpenAI's embeddings "
                f"format ({{'data': [{{'index': i, 'embedding': [...]}}]}}): {e!r}."
            ) from e
        if vectors.shape != (count, self._dimensions):
            raise EmbeddingError(
                f"Embedder {self.alias!r}: {self.url} returned vectors of shape {vectors.shape} "
                f"for {count} text(s); OPTIONS declares {self._dimensions} dimensions."
            )
        return vectors


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(error.read() or b"{}")
    except (ValueError, OSError):
        return ""
    message = answer.get("error", "") if isinstance(answer, dict) else ""
    if isinstance(message, dict):
        message = message.get("message", "")
    return str(message)[:300]
