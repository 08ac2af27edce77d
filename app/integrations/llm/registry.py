"""Voters built from settings, once per process, and closed with it."""

from __future__ import annotations

from pydantic import SecretStr

from app.core.settings import Settings
from app.integrations.llm.anthropic import AnthropicVoter
from app.integrations.llm.base import Voter
from app.integrations.llm.gemini import GeminiVoter
from app.integrations.llm.openai import OpenAIVoter


def _connection(
    provider: str, settings: Settings
) -> tuple[type[Voter], SecretStr | None, str | None]:
    """The SDK and where to reach it, named the way each SDK names its settings."""
    return {
        "openai": (OpenAIVoter, settings.openai_api_key, settings.openai_base_url),
        "openai_compatible": (
            OpenAIVoter,
            settings.openai_compatible_api_key,
            settings.openai_compatible_base_url,
        ),
        "anthropic": (AnthropicVoter, settings.anthropic_api_key, settings.anthropic_base_url),
        "gemini": (GeminiVoter, settings.gemini_api_key, settings.google_gemini_base_url),
    }[provider]


def build_voter(provider: str, model: str, settings: Settings) -> Voter | None:
    """The voter for (provider, model), or None when the provider has no key configured."""
    if provider not in settings.configured_llm_providers():
        return None
    voter_class, api_key, base_url = _connection(provider, settings)
    assert api_key is not None
    return voter_class(
        provider,
        model,
        api_key=api_key.get_secret_value(),
        base_url=base_url,
        timeout_s=settings.llm_timeout_s,
    )


class VoterPool:
    """One voter per (provider, model) for the life of a process: SDK clients hold
    connection pools bound to the event loop that made them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._voters: dict[tuple[str, str], Voter | None] = {}

    def get(self, provider: str, model: str) -> Voter | None:
        key = (provider, model)
        if key not in self._voters:
            self._voters[key] = build_voter(provider, model, self._settings)
        return self._voters[key]

    async def aclose(self) -> None:
        voters, self._voters = [v for v in self._voters.values() if v], {}
        for voter in voters:
            await voter.aclose()
