"""Shared model configuration: camelCase keys on the wire and in the store."""

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A model whose stored and serialised keys are camelCase."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
