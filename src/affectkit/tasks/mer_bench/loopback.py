"""A scripted OpenAI-compatible server on 127.0.0.1 for offline tests and the transport benchmark.

``ScriptedServer(replies=[...])`` answers ``POST /v1/chat/completions`` from a queue (then repeats
the last reply, or calls ``responder(body)`` when given) and records every request body. A reply is
``Reply(status, content, finish_reason, headers, raw)``; ``latency_s`` delays every answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from affectkit.tasks.mer_bench.schema import BLOCKS


@dataclass
class Reply:
    status: int = 200
    content: str | None = None
    finish_reason: str = "stop"
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None  # a body sent as is (for non-200 replies or broken JSON)
    usage: dict[str, Any] | None = None


def valid_judgment(label: str = "happy", score: int = 4, consistent: bool = True) -> dict[str, Any]:
    """A judgment that passes validation (for scripted replies)."""
    out: dict[str, Any] = {}
    for block, fields in BLOCKS.items():
        sub: dict[str, Any] = {"rationale": f"{block} looks fine"}
        for name, kind in fields:
            sub[name] = {"likert": score, "bool": consistent, "label": label, "other": None}[kind]
        out[block] = sub
    return out


def completion(content: str | None, finish_reason: str = "stop", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": usage if usage is not None else {"prompt_tokens": 1000, "completion_tokens": 200,
                                                  "prompt_tokens_details": {"cached_tokens": 100}},
    }


class _Server(ThreadingHTTPServer):
    # the default listen backlog (5) overflows with 16 simultaneous connects: the kernel drops SYNs
    # and the client retries after a second, which would be measured as transport latency
    request_queue_size = 256


class ScriptedServer:
    def __init__(self, replies: list[Reply] | None = None, responder: Callable[[dict[str, Any]], Reply] | None = None,
                 latency_s: float = 0.0):
        self.replies = list(replies or [])
        self.responder = responder
        self.latency_s = latency_s
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._i = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]}), {})

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                reply = server._next(body, dict(self.headers))
                if server.latency_s:
                    time.sleep(server.latency_s)
                if reply.raw is not None:
                    text = reply.raw
                elif reply.status == 200:
                    text = json.dumps(completion(reply.content, reply.finish_reason, reply.usage))
                else:
                    text = json.dumps({"error": {"message": f"scripted {reply.status}"}})
                self._send(reply.status, text, reply.headers)

            def _send(self, status: int, text: str, headers: dict[str, str]) -> None:
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            if self.responder is not None:
                return self.responder(body)
            if not self.replies:
                return Reply(500)
            reply = self.replies[min(self._i, len(self.replies) - 1)]
            self._i += 1
            return reply

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
