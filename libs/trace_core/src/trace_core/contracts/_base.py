from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A wire payload: unknown fields are rejected so a typo in a caller is a 4xx, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
