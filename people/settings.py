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
