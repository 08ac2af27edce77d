"""Anthropic Claude, made to answer through one forced tool whose input is the vote."""

from __future__ import annotations

import anthropic

from app.integrations.llm.base import (
    MAX_OUTPUT_TOKENS,
    VOTE_SCHEMA,
    Answer,
    ProviderHTTPError,
    VotePrompt,
    Voter,
    retry_after_seconds,
)

TOOL_NAME = "cast_vote"


class AnthropicVoter(Voter):
    def _connect(self, api_key: str, base_url: str | None) -> None:
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=self.timeout_s
        )

    async def _ask(self, prompt: VotePrompt, remaining_s: float) -> Answer:
        try:
            message = await self._client.messages.create(
                model=self.model,
                max_tokens=MAX_OUTPUT_TOKENS,
                # No temperature: this SDK's Messages API no longer takes sampling parameters;
                # the forced tool call is what keeps the answer to the vote's shape.
                system=prompt.system,
                messages=[{"role": "user", "content": prompt.user}],
                tools=[
                    {
                        "name": TOOL_NAME,
                        "description": "Cast the trading vote.",
                        "input_schema": VOTE_SCHEMA,
                    }
                ],
                tool_choice={"type": "tool", "name": TOOL_NAME},
                timeout=max(0.1, remaining_s),
            )
        except anthropic.APIStatusError as exc:
            raise ProviderHTTPError(
                exc.status_code, retry_after_seconds(exc.response.headers)
            ) from exc
        tool_input = next(
            (
                block.input
                for block in message.content
                if block.type == "tool_use" and block.name == TOOL_NAME
            ),
            None,
        )
        refusal = None
        if message.stop_reason == "refusal":
            refusal = "the model refused"
        elif tool_input is None:
            refusal = f"no {TOOL_NAME} tool call (stop_reason {message.stop_reason})"
        return Answer(
            content=tool_input if isinstance(tool_input, dict) else None,
            tokens_in=message.usage.input_tokens,
            tokens_out=message.usage.output_tokens,
            refusal=refusal,
        )

    async def aclose(self) -> None:
        await self._client.close()
