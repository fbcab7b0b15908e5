"""The ``openai`` judge: any OpenAI-compatible chat-completions server, async with bounded concurrency.

Requests are blocking ``urllib`` calls run in a thread pool sized to the concurrency and awaited from
asyncio behind a semaphore (stdlib only, HTTPS and proxies included). Retries: connection errors,
timeouts, HTTP 408/409/429/5xx (``Retry-After`` honoured, capped), a truncated or empty reply (the
token budget doubles) and, unless switched off, replies that fail parsing or validation.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from affectkit.core.errors import RunFailure, UsageError
from affectkit.tasks.mer_bench.backends import Outcome, Sample, backoff_delay, check_reply
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.prompts import build_messages, image_mime
from affectkit.tasks.mer_bench.schema import SCHEMA_NAME, judgment_schema

RETRY_STATUS = {408, 409, 429}
FATAL_STATUS = {401, 403, 404}


def parse_retry_after(value: str | None, cap: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, min(cap, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(cap, when.timestamp() - time.time()))


def read_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """Token counts from either dialect: Chat Completions (prompt_/completion_tokens) or Responses (input_/output_tokens)."""
    if not isinstance(usage, dict):
        return {}
    def num(*keys: str) -> int:
        for k in keys:
            v = usage.get(k)
            if isinstance(v, (int, float)):
                return int(v)
        return 0
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    return {
        "input_tokens": num("prompt_tokens", "input_tokens"),
        "output_tokens": num("completion_tokens", "output_tokens"),
        "cached_tokens": int(cached or 0),
    }


def price_table(cfg_in: float, cfg_cached: float, cfg_out: float, model: str) -> dict[str, float]:
    """USD per 1M tokens: explicit options, else OPENAI_PRICE_TABLE_JSON[model], else OPENAI_PRICE_* env."""
    prices = {"input": 0.0, "cached_input": -1.0, "output": 0.0}
    table = os.environ.get("OPENAI_PRICE_TABLE_JSON")
    if table:
        try:
            entry = json.loads(table).get(model, {})
        except (json.JSONDecodeError, AttributeError):
            raise UsageError("OPENAI_PRICE_TABLE_JSON is not a JSON object",
                             'expected {"MODEL": {"input": 1.25, "cached_input": 0.125, "output": 10}}') from None
        for k in prices:
            if isinstance(entry.get(k), (int, float)):
                prices[k] = float(entry[k])
    for k, env in (("input", "OPENAI_PRICE_INPUT"), ("cached_input", "OPENAI_PRICE_CACHED_INPUT"), ("output", "OPENAI_PRICE_OUTPUT")):
        if os.environ.get(env):
            try:
                prices[k] = float(os.environ[env])
            except ValueError:
                raise UsageError(f"{env}={os.environ[env]!r} is not a number") from None
    for k, v in (("input", cfg_in), ("cached_input", cfg_cached), ("output", cfg_out)):
        if v >= 0:
            prices[k] = v
    if prices["cached_input"] < 0:
        prices["cached_input"] = prices["input"]
    return prices


def cost_usd(usage: dict[str, int], prices: dict[str, float]) -> float:
    cached = min(usage.get("cached_tokens", 0), usage.get("input_tokens", 0))
    return ((usage.get("input_tokens", 0) - cached) * prices["input"] + cached * prices["cached_input"]
            + usage.get("output_tokens", 0) * prices["output"]) / 1e6


def message_text(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, list):  # some servers answer with parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else None


class OpenAIBackend:
    kind = "openai"

    def __init__(self, cfg: JudgeConfig, seed: int = 0):
        if not cfg.openai.model:
            raise UsageError("--judge openai needs a model name", "pass --model NAME (as the server lists it under /v1/models)")
        self.cfg = cfg
        self.oc = cfg.openai
        self.url = self.oc.base_url.rstrip("/") + "/chat/completions"
        if not self.url.startswith(("http://", "https://")):
            raise UsageError(f"--base-url {self.oc.base_url!r} is not an http(s) URL", "for example http://127.0.0.1:8000/v1")
        self.schema = judgment_schema(cfg.rationale_first)
        self.prices = price_table(self.oc.price_input, self.oc.price_cached_input, self.oc.price_output, self.oc.model)
        self._rng = random.Random(seed)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def identity(self) -> str:
        return f"openai:{self.oc.model}"

    def settings(self) -> dict[str, Any]:
        """What changes an answer (part of the cache key); the URL and the key are not."""
        return {
            "model": self.oc.model, "temperature": self.cfg.temperature, "temperature_step": self.cfg.temperature_step,
            "max_tokens": self.oc.max_tokens, "response_format": self.oc.response_format,
            "image_detail": self.oc.image_detail, "retry_invalid": self.cfg.retry_invalid,
        }

    def preflight(self) -> None:
        """Fail at once, not after every sample's retries, when nothing listens at the base URL."""
        import socket
        import urllib.parse

        u = urllib.parse.urlsplit(self.url)
        port = u.port or (443 if u.scheme == "https" else 80)
        if os.environ.get("HTTPS_PROXY") or os.environ.get("HTTP_PROXY") or os.environ.get("https_proxy") or os.environ.get("http_proxy"):
            return  # the proxy decides reachability
        try:
            with socket.create_connection((u.hostname or "", port), timeout=min(10.0, self.oc.timeout_s)):
                pass
        except OSError as exc:
            raise RunFailure(f"cannot connect to {u.scheme}://{u.hostname}:{port} ({exc.strerror or exc})",
                             "start the server (e.g. vllm serve MODEL --limit-mm-per-prompt '{\"image\": 2}') or fix --base-url") from None

    # -- HTTP ------------------------------------------------------------------------------------
    def _post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.oc.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.oc.timeout_s) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as exc:
            data = exc.read() if exc.fp is not None else b""
            return exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, data

    def request_body(self, sample: Sample, temperature: float, max_tokens: int) -> dict[str, Any]:
        src = (sample.src_path.read_bytes(), image_mime(sample.src_path))
        gen = (sample.gen_path.read_bytes(), image_mime(sample.gen_path))
        body: dict[str, Any] = {
            "model": self.oc.model,
            "messages": build_messages(sample.row, src, gen, self.cfg.images_first, self.cfg.include_reference,
                                       self.oc.image_detail or None),
            "temperature": round(temperature, 4),
            "stream": False,
        }
        if self.oc.token_param in ("max_completion_tokens", "both"):
            body["max_completion_tokens"] = max_tokens
        if self.oc.token_param in ("max_tokens", "both"):
            body["max_tokens"] = max_tokens
        if self.oc.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": self.schema}}
        elif self.oc.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def judge(self, sample: Sample) -> Outcome:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency), thread_name_prefix="judge-http")
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        out = Outcome(status="failed")
        max_tokens = self.oc.max_tokens
        for attempt in range(cfg.max_attempts):
            temperature = cfg.temperature + cfg.temperature_step * attempt
            body = json.dumps(self.request_body(sample, temperature, max_tokens)).encode("utf-8")
            out.attempts = attempt + 1
            wait: float | None = None
            entry: dict[str, Any] = {"attempt": attempt + 1}
            try:
                status, headers, data = await loop.run_in_executor(self._pool, self._post, body)
                out.http_calls += 1
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                out.http_calls += 1
                reason = getattr(exc, "reason", exc)
                entry.update(kind="connection", detail=f"{type(exc).__name__}: {reason}")
                out.attempt_log.append(entry)
                out.error_kind, out.raw_text = "connection", None
                await asyncio.sleep(backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s, self._rng))
                continue
            text_body = data.decode("utf-8", errors="replace")
            entry["status"] = status
            if status in RETRY_STATUS or status >= 500:
                entry["kind"] = f"http_{status}"
                out.error_kind, out.raw_text = entry["kind"], text_body[:2000]
                wait = parse_retry_after(headers.get("retry-after"), cfg.backoff_cap_s)
                entry["retry_after"] = wait
                out.attempt_log.append(entry)
                if wait is None:
                    wait = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s, self._rng)
                await asyncio.sleep(wait)
                continue
            if status in FATAL_STATUS:  # wrong key, URL or model: every other sample would fail the same way
                raise RunFailure(f"{self.url} answered {_http_hint(status, text_body)}",
                                 "check --base-url, --model and the key variable named by --api-key-env")
            if status >= 400:  # this request will never be accepted: record it and go on
                entry["kind"] = f"http_{status}"
                out.attempt_log.append(entry)
                out.error_kind, out.raw_text = entry["kind"], text_body[:2000]
                out.errors = [{"code": "http", "where": "request", "message": _http_hint(status, text_body)}]
                return out
            try:
                resp = json.loads(text_body)
                choice = resp["choices"][0]
                message = choice.get("message") or {}
            except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                entry["kind"] = "bad_response"
                out.attempt_log.append(entry)
                out.error_kind, out.raw_text = "bad_response", text_body[:2000]
                await asyncio.sleep(backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s, self._rng))
                continue
            usage = read_usage(resp.get("usage"))
            for k, v in usage.items():
                out.usage[k] = out.usage.get(k, 0) + v
            text = message_text(message)
            finish = choice.get("finish_reason")
            entry["finish_reason"] = finish
            if finish == "length" or not (text or "").strip():
                entry["kind"] = "truncated" if finish == "length" else "empty"
                out.attempt_log.append(entry)
                out.error_kind, out.raw_text = "truncated", text
                max_tokens = min(self.oc.max_tokens_cap, max_tokens * 2)
                await asyncio.sleep(backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s, self._rng))
                continue
            check = check_reply(text)
            out.raw_text = text
            if check.ok:
                entry["kind"] = "ok"
                entry["parse"] = check.method
                out.attempt_log.append(entry)
                out.status, out.judgment, out.error_kind, out.errors, out.parsed = "ok", check.obj, None, [], None
                return out
            entry["kind"] = check.kind
            entry["errors"] = [e["code"] for e in check.errors]
            out.attempt_log.append(entry)
            out.error_kind, out.errors, out.parsed = check.kind, check.errors, check.obj
            if not cfg.retry_invalid:
                return out
            await asyncio.sleep(backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_cap_s, self._rng))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _http_hint(status: int, body: str) -> str:
    msg = f"HTTP {status}: {body[:300]}"
    if "At most 1 image" in body or "at most 1 image" in body.lower():
        msg += " (vLLM: start the server with --limit-mm-per-prompt '{\"image\": 2}')"
    if status in (401, 403):
        msg += " (check the API key variable named by --api-key-env)"
    return msg
