"""``people``: limits for imports."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PeopleSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    import_max_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, description="Largest CSV accepted (413 beyond)."
    )
    import_dir: str = Field(
        default="./var/imports", description="Where uploaded CSVs wait while they import."
    )
    import_heartbeat_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description=(
            "How often a running import shows it is alive; one silent for four of these "
            "was left by a process that died, and is marked failed with what it had done."
        ),
    )
