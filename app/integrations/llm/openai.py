"""OpenAI (and any OpenAI-compatible server, e.g. Ollama or vLLM) with a strict JSON schema."""

from __future__ import annotations

import openai
from openai import omit

from app.integrations.llm.base import (
    MAX_OUTPUT_TOKENS,
    VOTE_SCHEMA,
    Answer,
    ProviderHTTPError,
    VotePrompt,
    Voter,
    retry_after_seconds,
)


class OpenAIVoter(Voter):
    def _connect(self, api_key: str, base_url: str | None) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=self.timeout_s
        )

    async def _ask(self, prompt: VotePrompt, remaining_s: float) -> Answer:
        try:
            completion = await self._client.chat.completions.create(
                model=self.model,
                temperature=0,
                # OpenAI's reasoning models take only max_completion_tokens (which counts their
                # hidden reasoning too); local servers such as Ollama know only max_tokens.
                max_completion_tokens=MAX_OUTPUT_TOKENS if self.provider == "openai" else omit,
                max_tokens=omit if self.provider == "openai" else MAX_OUTPUT_TOKENS,
                messages=[
                    {"role": "system", "content": prompt.system},
                    {"role": "user", "content": prompt.user},
                ],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "vote", "strict": True, "schema": VOTE_SCHEMA},
                },
                timeout=max(0.1, remaining_s),
            )
        except openai.APIStatusError as exc:
            raise ProviderHTTPError(
                exc.status_code, retry_after_seconds(exc.response.headers)
            ) from exc
        usage = completion.usage
        message = completion.choices[0].message if completion.choices else None
        return Answer(
            content=message.content if message else None,
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            refusal=message.refusal if message else "no choice returned",
        )

    async def aclose(self) -> None:
        await self._client.close()
