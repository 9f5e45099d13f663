"""Settings of a node, read from ``BIOBANK_*`` environment variables.

Entry points call :func:`get_settings` and pass plain values to services; domain code never
reads the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Node settings (environment prefix ``BIOBANK_``)."""

    model_config = SettingsConfigDict(env_prefix="BIOBANK_", extra="ignore")

    home: Path = Field(default=Path("./biobank-data"), description="Node home folder")
    jobs: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    log_level: str = "INFO"
    database_url: str | None = Field(
        default=None,
        description="Catalogue database URL (e.g. postgresql://user@host/db); default: the "
        "node home's SQLite file, or the URL in its node.yaml",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="Address of a Dask distributed scheduler (tcp://host:8786): background "
        "jobs run there instead of on a local process pool",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, built on first use (never at import)."""
    return Settings()


__all__ = ["Settings", "get_settings"]
