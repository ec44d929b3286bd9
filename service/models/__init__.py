"""Stored documents and task payloads."""

from service.models.catalog import Album, Artist
from service.models.jobs import JobType
from service.models.logs import (
    UNFINISHED,
    EnrichmentLog,
    JobError,
    JobStatus,
    LogEntry,
    WorkerInfo,
)

DOCUMENT_MODELS = [Album, Artist, EnrichmentLog]

__all__ = [
    "DOCUMENT_MODELS",
    "UNFINISHED",
    "Album",
    "Artist",
    "EnrichmentLog",
    "JobError",
    "JobStatus",
    "JobType",
    "LogEntry",
    "WorkerInfo",
]
