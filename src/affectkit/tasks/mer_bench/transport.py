"""The ``openai`` judge: any OpenAI-compatible chat-completions server, async with bounded concurrency.

Requests are blocking ``urllib`` calls, each in a daemon thread awaited from asyncio behind the run's
semaphore (stdlib only, HTTPS and proxies included); a call given up on (the sample's time budget,
the run's deadline) never holds the process open. Timeouts: ``openai.connect_timeout_s`` to connect,
``openai.read_timeout_s`` for each wait on the server's answer, and ``judge.sample_timeout_s`` over
all attempts and waits of one sample, so a server that accepts connections and never answers costs
at most that per sample; after three such samples with no answer at all the run stops (RunFailure,
``--resume`` continues). Retries: connection errors, timeouts, HTTP 408/409/429/5xx
(``Retry-After`` honoured, capped), a truncated or empty reply (the token budget doubles) and,
unless switched off, replies that fail parsing or validation.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from affectkit.core.errors import RunFailure, UsageError
from affectkit.tasks.mer_bench.backends import Outcome, Sample, backoff_delay, check_reply
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.prompts import build_messages, image_mime
from affectkit.tasks.mer_bench.schema import SCHEMA_NAME, judgment_schema

RETRY_STATUS = {408, 409, 429}
FATAL_STATUS = {401, 403, 404}
SILENT_SAMPLES = 3  # samples timed out with no answer at all from the server: the run stops (RunFailure)


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


class _ReadTimeout:
    """Connects within ``timeout`` (the connect timeout; for HTTPS the TLS handshake too), then waits
    up to ``read_timeout`` per read."""

    sock: Any

    def __init__(self, *args: Any, read_timeout: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)


class _TimedHTTPConnection(_ReadTimeout, http.client.HTTPConnection):
    pass


class _TimedHTTPSConnection(_ReadTimeout, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self.connection = functools.partial(_TimedHTTPConnection, read_timeout=read_timeout)

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(self.connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self.connection = functools.partial(_TimedHTTPSConnection, read_timeout=read_timeout)

    def https_open(self, req: urllib.request.Request) -> Any:
        kwargs: dict[str, Any] = {"context": self._context}  # type: ignore[attr-defined]
        if hasattr(self, "_check_hostname"):  # Python < 3.12
            kwargs["check_hostname"] = self._check_hostname
        return self.do_open(self.connection, req, **kwargs)


def timed_opener(read_timeout: float) -> urllib.request.OpenerDirector:
    """A urllib opener (proxies from the environment as usual) whose connections wait at most
    ``read_timeout`` seconds for each read; ``open(req, timeout=CONNECT)`` bounds the connect."""
    return urllib.request.build_opener(_HTTPHandler(read_timeout), _HTTPSHandler(read_timeout))


def check_base_url(base_url: str) -> urllib.parse.SplitResult:
    """The parsed server URL, or a UsageError naming --base-url (scheme, host, port 1-65535)."""
    where = f"--base-url {base_url!r} (judge.openai.base_url)"
    example = "for example http://127.0.0.1:8000/v1"
    if any(ch.isspace() or ord(ch) < 32 for ch in base_url):
        raise UsageError(f"{where}: holds whitespace or a control character", example)
    u = urllib.parse.urlsplit(base_url)
    if u.scheme not in ("http", "https"):
        raise UsageError(f"{where} is not an http(s) URL", example)
    try:
        port = u.port
    except ValueError:
        raise UsageError(f"{where}: the port is not a number from 1 to 65535", example) from None
    if port == 0:
        raise UsageError(f"{where}: the port is not a number from 1 to 65535", example)
    if not u.hostname:
        raise UsageError(f"{where}: no host name", example)
    return u


def _in_daemon_thread(fn: Callable[[], Any]) -> asyncio.Future[Any]:
    """``fn()`` in a daemon thread, as an awaitable: giving up on it (cancel, timeout) neither waits
    for the thread nor keeps the process alive at exit."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def deliver(result: Any, exc: BaseException | None) -> None:
        if fut.done():  # given up on meanwhile
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def work() -> None:
        try:
            result, exc = fn(), None
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            result, exc = None, e
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for this answer any more
            loop.call_soon_threadsafe(deliver, result, exc)

    threading.Thread(target=work, name="judge-http", daemon=True).start()
    return fut


class OpenAIBackend:
    kind = "openai"

    def __init__(self, cfg: JudgeConfig, seed: int = 0):
        if not cfg.openai.model:
            raise UsageError("--judge openai needs a model name", "pass --model NAME (as the server lists it under /v1/models)")
        self.cfg = cfg
        self.oc = cfg.openai
        check_base_url(self.oc.base_url)
        self.url = self.oc.base_url.rstrip("/") + "/chat/completions"
        self.schema = judgment_schema(cfg.rationale_first)
        self.prices = price_table(self.oc.price_input, self.oc.price_cached_input, self.oc.price_output, self.oc.model)
        self._rng = random.Random(seed)
        self._opener = timed_opener(self.oc.read_timeout_s)
        self._answered = False  # has the server answered any request of this run (any status)?
        self._silent = 0  # samples that ended in a timeout while it has answered none

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

        u = urllib.parse.urlsplit(self.url)
        port = u.port or (443 if u.scheme == "https" else 80)
        if os.environ.get("HTTPS_PROXY") or os.environ.get("HTTP_PROXY") or os.environ.get("https_proxy") or os.environ.get("http_proxy"):
            return  # the proxy decides reachability
        try:
            with socket.create_connection((u.hostname or "", port), timeout=self.oc.connect_timeout_s):
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
            with self._opener.open(req, timeout=self.oc.connect_timeout_s) as resp:
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

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.cfg.backoff_base_s, self.cfg.backoff_cap_s, self._rng)

    async def _wait(self, seconds: float, t0: float) -> bool:
        """Sleep before the next attempt; False (no sleep) when that would pass the sample's budget."""
        if time.monotonic() - t0 + seconds >= self.cfg.sample_timeout_s:
            return False
        await asyncio.sleep(seconds)
        return True

    async def judge(self, sample: Sample) -> Outcome:
        out = await self._judge(sample)
        if out.status != "ok" and out.error_kind in ("timeout", "read_timeout") and not self._answered:
            self._silent += 1
            if self._silent >= SILENT_SAMPLES:  # the next samples would wait just as long for nothing
                raise RunFailure(
                    f"{self.url} accepted connections but answered none of the requests of {self._silent} samples "
                    f"({out.error_kind}: {out.errors[0]['message'] if out.errors else ''})",
                    "check that the server is up and serving --model, or raise judge.openai.read_timeout_s and "
                    "judge.sample_timeout_s for a slow model; --resume continues")
        return out

    async def _judge(self, sample: Sample) -> Outcome:
        cfg = self.cfg
        budget = cfg.sample_timeout_s
        t0 = time.monotonic()
        out = Outcome(status="failed")
        max_tokens = self.oc.max_tokens
        for attempt in range(cfg.max_attempts):
            temperature = cfg.temperature + cfg.temperature_step * attempt
            body = json.dumps(self.request_body(sample, temperature, max_tokens)).encode("utf-8")
            out.attempts = attempt + 1
            wait: float | None = None
            entry: dict[str, Any] = {"attempt": attempt + 1}
            call = _in_daemon_thread(functools.partial(self._post, body))
            try:
                finished, _ = await asyncio.wait({call}, timeout=max(0.0, budget - (time.monotonic() - t0)))
            except asyncio.CancelledError:  # the run's deadline: nobody will read this answer
                call.cancel()
                raise
            out.http_calls += 1
            if not finished:  # the sample's time is up: give up on this call (its thread ends on its own)
                call.cancel()
                _failure(out, entry, "timeout", f"no answer within the sample's budget of {budget:g} s (judge.sample_timeout_s)")
                return out
            try:
                status, headers, data = call.result()
                self._answered = True
            except (urllib.error.URLError, ConnectionError, OSError, http.client.HTTPException) as exc:
                if isinstance(exc, TimeoutError):  # connected, then the server did not answer in time
                    kind, detail = "read_timeout", f"no answer within {self.oc.read_timeout_s:g} s (judge.openai.read_timeout_s)"
                else:
                    kind, detail = "connection", f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                entry["detail"] = detail
                _failure(out, entry, kind, detail)
                if not await self._wait(self._backoff(attempt), t0):
                    return out
                continue
            text_body = data.decode("utf-8", errors="replace")
            entry["status"] = status
            if status in RETRY_STATUS or status >= 500:
                _failure(out, entry, f"http_{status}", _http_hint(status, text_body), text_body[:2000], code="http")
                wait = parse_retry_after(headers.get("retry-after"), cfg.backoff_cap_s)
                entry["retry_after"] = wait
                if not await self._wait(self._backoff(attempt) if wait is None else wait, t0):
                    return out
                continue
            if status in FATAL_STATUS:  # wrong key, URL or model: every other sample would fail the same way
                raise RunFailure(f"{self.url} answered {_http_hint(status, text_body)}",
                                 "check --base-url, --model and the key variable named by --api-key-env")
            if status >= 400:  # this request will never be accepted: record it and go on
                _failure(out, entry, f"http_{status}", _http_hint(status, text_body), text_body[:2000], code="http")
                return out
            try:
                resp = json.loads(text_body)
                choice = resp["choices"][0]
                message = choice.get("message") or {}
            except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                _failure(out, entry, "bad_response", "not a chat-completions answer", text_body[:2000])
                if not await self._wait(self._backoff(attempt), t0):
                    return out
                continue
            usage = read_usage(resp.get("usage"))
            for k, v in usage.items():
                out.usage[k] = out.usage.get(k, 0) + v
            text = message_text(message)
            finish = choice.get("finish_reason")
            entry["finish_reason"] = finish
            if finish == "length" or not (text or "").strip():
                _failure(out, entry, "truncated", f"reply {'cut at the token budget' if finish == 'length' else 'empty'}", text)
                entry["kind"] = "truncated" if finish == "length" else "empty"
                max_tokens = min(self.oc.max_tokens_cap, max_tokens * 2)
                if not await self._wait(self._backoff(attempt), t0):
                    return out
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
            if not await self._wait(self._backoff(attempt), t0):
                return out
        return out

    def close(self) -> None:
        pass  # nothing held: a request still running is a daemon thread that ends with its timeouts


def _failure(out: Outcome, entry: dict[str, Any], kind: str, message: str, raw_text: str | None = None,
             code: str | None = None) -> None:
    """Log a failed attempt and make it the sample's failure so far."""
    entry["kind"] = kind
    out.attempt_log.append(entry)
    out.error_kind, out.raw_text = kind, raw_text
    out.errors = [{"code": code or kind, "where": "request", "message": message}]


def _http_hint(status: int, body: str) -> str:
    msg = f"HTTP {status}: {body[:300]}"
    if "At most 1 image" in body or "at most 1 image" in body.lower():
        msg += " (vLLM: start the server with --limit-mm-per-prompt '{\"image\": 2}')"
    if status in (401, 403):
        msg += " (check the API key variable named by --api-key-env)"
    return msg
