"""``agents[]``: how each agent is described in YAML (DESIGN §8)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Providers LangChain's init_chat_model knows; running them arrives with the LangChain
# runtime, so for now a provider model is refused with a clear message.
KNOWN_PROVIDERS = frozenset(
    {
        "openai",
        "anthropic",
        "ollama",
        "azure_openai",
        "google_genai",
        "google_vertexai",
        "bedrock",
        "bedrock_converse",
        "mistralai",
        "groq",
        "fireworks",
        "together",
        "huggingface",
        "deepseek",
        "xai",
        "perplexity",
        "cohere",
    }
)


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
    turn_deadline_seconds: float = Field(default=8.0, gt=0, le=120)

    @field_validator("model")
    @classmethod
    def _model_is_known(cls, model: str) -> str:
        if model == "embedded":
            return model
        provider, sep, name = model.partition(":")
        if not sep or not name:
            raise ValueError(f"'{model}' is neither 'embedded' nor 'provider:model'")
        if provider not in KNOWN_PROVIDERS:
            raise ValueError(f"unknown provider '{provider}'")
        raise ValueError(
            f"provider models ('{model}') are not supported by this version yet; use 'embedded'"
        )
