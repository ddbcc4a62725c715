"""``agents[]``: how each agent is described in YAML (DESIGN §8)."""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.abilities import check_abilities


def check_model(model: str) -> str:
    """``model`` if it is a ``provider:name`` LangChain can start here; else why not."""
    provider, sep, name = model.partition(":")
    if not sep or not name:
        raise ValueError(f"'{model}' is neither 'embedded' nor 'provider:model'")
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider '{provider}' (known: {', '.join(sorted(PROVIDERS))})")
    module, extra = PROVIDERS[provider]
    if not _installed(module):
        package = module.replace("_", "-")
        how = f"pip install 'frontdesk[{extra}]'" if extra else f"pip install {package}"
        raise ValueError(f"model '{model}' needs the {package} package: {how}")
    return model


# Providers LangChain's init_chat_model knows -> (the package it imports, our extra or None).
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "openai": ("langchain_openai", "openai"),
    "anthropic": ("langchain_anthropic", "anthropic"),
    "ollama": ("langchain_ollama", "ollama"),
    "azure_openai": ("langchain_openai", "openai"),
    "google_genai": ("langchain_google_genai", None),
    "google_vertexai": ("langchain_google_vertexai", None),
    "bedrock": ("langchain_aws", None),
    "bedrock_converse": ("langchain_aws", None),
    "mistralai": ("langchain_mistralai", None),
    "groq": ("langchain_groq", None),
    "fireworks": ("langchain_fireworks", None),
    "together": ("langchain_together", None),
    "huggingface": ("langchain_huggingface", None),
    "deepseek": ("langchain_deepseek", None),
    "xai": ("langchain_xai", None),
    "perplexity": ("langchain_perplexity", None),
    "cohere": ("langchain_cohere", None),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class KnowledgeEntry(BaseModel):
    """A question the agent can answer, with its answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    q: str = Field(min_length=1)
    a: str = Field(min_length=1)


class VoiceSettings(BaseModel):
    """How the agent sounds on a call (Twilio ``<Say>`` voice and language)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    voice: str = "Polly.Joanna"
    language: str = "en-US"


class AgentSettings(BaseModel):
    """One agent: who it is (``bio``), what runs it (``model``) and what it knows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    bio: str = Field(default="", description="Personality; the embedded model greets with it.")
    model: str = Field(default="embedded", description="'embedded' or 'provider:model'.")
    voice: VoiceSettings = VoiceSettings()
    greeting: str | None = Field(default=None, description="Overrides the greeting from the bio.")
    knowledge: tuple[KnowledgeEntry, ...] = ()
    min_similarity: float = Field(
        default=0.3, gt=0, le=1, description="How close a question must be to a knowledge entry."
    )
    turn_deadline_seconds: float = Field(
        default=8.0, gt=0, le=120, description="The whole turn, tools included."
    )
    abilities: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Ability name -> its settings (a list of names works)."
    )
    workflows: tuple[str, ...] = Field(default=(), description="Workflows it may start.")
    channels: tuple[str, ...] = Field(default=(), description="Channels it is deployed to.")
    base_url: str | None = Field(default=None, description="The provider's API (a proxy, Ollama).")
    temperature: float | None = Field(default=None, ge=0, le=2)
    timeout_seconds: float = Field(default=20.0, gt=0, le=300, description="Per model request.")
    max_steps: int = Field(default=6, ge=1, le=25, description="Model calls per turn (tool loop).")
    max_tokens: int | None = Field(default=None, ge=1, le=100_000, description="Per response.")
    max_turn_tokens: int = Field(
        default=20_000,
        ge=1,
        description="Tokens one turn may use, where the provider reports them.",
    )
    api_key: str | None = Field(
        default=None,
        repr=False,
        description="Else the provider's own variable (OPENAI_API_KEY...).",
    )

    @field_validator("abilities", mode="before")
    @classmethod
    def _ability_list(cls, raw: Any) -> Any:
        if isinstance(raw, list | tuple):
            return {str(name): {} for name in raw}
        return (
            {k: (v if v is not None else {}) for k, v in raw.items()}
            if isinstance(raw, dict)
            else raw
        )

    @field_validator("abilities")
    @classmethod
    def _abilities_known(cls, abilities: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return check_abilities(abilities)

    @field_validator("model")
    @classmethod
    def _model_is_known(cls, model: str) -> str:
        return model if model == "embedded" else check_model(model)
