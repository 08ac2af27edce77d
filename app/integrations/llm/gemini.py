"""Google Gemini through google-genai (the successor of the retired google-generativeai)."""

from __future__ import annotations

from google import genai
from google.genai import errors, types

from app.integrations.llm.base import (
    MAX_OUTPUT_TOKENS,
    VOTE_SCHEMA,
    Answer,
    ProviderHTTPError,
    VotePrompt,
    Voter,
    retry_after_seconds,
)


def _gemini_schema() -> dict[str, object]:
    # Gemini's response schema is an OpenAPI subset: no additionalProperties.
    return {k: v for k, v in VOTE_SCHEMA.items() if k != "additionalProperties"}


class GeminiVoter(Voter):
    def _connect(self, api_key: str, base_url: str | None) -> None:
        self._client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(self.timeout_s * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),
            ),
        )

    async def _ask(self, prompt: VotePrompt, remaining_s: float) -> Answer:
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model,
                contents=prompt.user,
                config=types.GenerateContentConfig(
                    system_instruction=prompt.system,
                    temperature=0,
                    # Bounds the answer and the model's thinking together.
                    max_output_tokens=MAX_OUTPUT_TOKENS,
                    response_mime_type="application/json",
                    response_schema=_gemini_schema(),
                ),
            )
        except errors.APIError as exc:
            headers = getattr(exc.response, "headers", None)
            raise ProviderHTTPError(exc.code, retry_after_seconds(headers)) from exc
        usage = response.usage_metadata
        candidate = response.candidates[0] if response.candidates else None
        refusal = None
        if candidate is None:
            feedback = response.prompt_feedback
            refusal = f"blocked: {feedback.block_reason}" if feedback else "no candidate"
        elif candidate.finish_reason and candidate.finish_reason.name in ("SAFETY", "RECITATION"):
            refusal = f"finish reason {candidate.finish_reason.name}"
        return Answer(
            content=response.text if refusal is None else None,
            tokens_in=(usage.prompt_token_count or 0) if usage else 0,
            # Thinking is billed as output but not counted among the candidates' tokens.
            tokens_out=(
                (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
                if usage
                else 0
            ),
            refusal=refusal,
        )

    async def aclose(self) -> None:
        await self._client.aio.aclose()
