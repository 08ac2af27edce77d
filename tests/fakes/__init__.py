"""Local servers that speak the OpenAI, Anthropic and Gemini HTTP APIs for the real SDKs.

Each is configured per test: the vote it answers, added latency, HTTP statuses to answer
first (e.g. one 429) or always, malformed output, or a refusal. They count what they receive
and keep the last request body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.sandbox_server import serve_in_thread

DEFAULT_VOTE = {
    "action": "BUY",
    "confidence": 0.8,
    "reasoning": "RSI oversold while the trend turns up.",
    "cited_indicators": ["rsi", "ema_cross"],
}


@dataclass
class Behaviour:
    vote: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_VOTE))
    latency_s: float = 0.0
    statuses_first: list[int] = field(default_factory=list)  # answered before succeeding
    always_status: int | None = None
    retry_after: str = "0"  # sent with a 429
    malformed: str | None = None  # "text": not JSON at all; "schema": JSON off the schema
    refuse: bool = False
    tokens_in: int = 120
    tokens_out: int = 40


class FakeProvider:
    name: str

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.requests = 0
        self.last_body: dict[str, Any] = {}
        self._lock = threading.Lock()

    def reset(self, **changes: Any) -> None:
        with self._lock:
            self.behaviour = Behaviour(**changes)
            self.requests = 0
            self.last_body = {}

    def answer_text(self) -> str:
        if self.behaviour.malformed == "text":
            return "I think you should buy, probably."
        if self.behaviour.malformed == "schema":
            return json.dumps({**self.behaviour.vote, "confidence": 7})
        return json.dumps(self.behaviour.vote)

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self._lock:
            self.requests += 1
            self.last_body = body
            status = (
                self.behaviour.statuses_first.pop(0)
                if self.behaviour.statuses_first
                else self.behaviour.always_status
            )
        if self.behaviour.latency_s:
            await asyncio.sleep(self.behaviour.latency_s)
        if status is not None:
            return JSONResponse(
                {"error": {"message": f"fake status {status}", "type": "fake", "code": status}},
                status_code=status,
                headers={"retry-after": self.behaviour.retry_after} if status == 429 else {},
            )
        return JSONResponse(self.success(body))

    def success(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def routes(self) -> list[Route]:
        raise NotImplementedError


class FakeOpenAI(FakeProvider):
    name = "openai"

    def routes(self) -> list[Route]:
        return [Route("/v1/chat/completions", self.handle, methods=["POST"])]

    def success(self, body: dict[str, Any]) -> dict[str, Any]:
        b = self.behaviour
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if b.refuse:
            message["refusal"] = "I can't help with trading decisions."
        else:
            message["content"] = self.answer_text()
        return {
            "id": f"chatcmpl-fake-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            ],
            "usage": {
                "prompt_tokens": b.tokens_in,
                "completion_tokens": b.tokens_out,
                "total_tokens": b.tokens_in + b.tokens_out,
            },
        }


class FakeAnthropic(FakeProvider):
    name = "anthropic"

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self.handle, methods=["POST"])]

    def success(self, body: dict[str, Any]) -> dict[str, Any]:
        b = self.behaviour
        if b.refuse:
            content: list[dict[str, Any]] = [{"type": "text", "text": "I can't do that."}]
            stop_reason = "refusal"
        elif b.malformed == "text":
            content, stop_reason = [{"type": "text", "text": self.answer_text()}], "end_turn"
        else:
            tool_input = json.loads(self.answer_text())
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_fake{self.requests}",
                    "name": body["tools"][0]["name"],
                    "input": tool_input,
                }
            ]
            stop_reason = "tool_use"
        return {
            "id": f"msg_fake{self.requests}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": b.tokens_in, "output_tokens": b.tokens_out},
        }


class FakeGemini(FakeProvider):
    name = "gemini"

    def routes(self) -> list[Route]:
        return [Route("/{version}/models/{model}:generateContent", self.handle, methods=["POST"])]

    def success(self, body: dict[str, Any]) -> dict[str, Any]:
        b = self.behaviour
        usage = {
            "promptTokenCount": b.tokens_in,
            "candidatesTokenCount": b.tokens_out,
            "totalTokenCount": b.tokens_in + b.tokens_out,
        }
        if b.refuse:
            return {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage}
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": self.answer_text()}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": "fake",
        }


@dataclass
class RunningFakes:
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini
    url: str

    @property
    def all(self) -> list[FakeProvider]:
        return [self.openai, self.anthropic, self.gemini]

    def settings_overrides(self) -> dict[str, Any]:
        """Settings that point the real SDKs here, with generated placeholder keys."""
        return {
            "openai_api_key": "fake-openai-key",
            "openai_base_url": f"{self.url}/v1",
            "anthropic_api_key": "fake-anthropic-key",
            "anthropic_base_url": self.url,
            "gemini_api_key": "fake-gemini-key",
            "google_gemini_base_url": self.url,
        }


@contextlib.contextmanager
def serve_fakes() -> Iterator[RunningFakes]:
    fakes = RunningFakes(FakeOpenAI(), FakeAnthropic(), FakeGemini(), url="")
    app = Starlette(routes=[route for fake in fakes.all for route in fake.routes()])
    with serve_in_thread(app) as url:
        fakes.url = url
        yield fakes
