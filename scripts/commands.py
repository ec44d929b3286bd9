"""Counting the commands a benchmark sends to the store (a PyMongo command listener)."""

from collections.abc import Collection
from typing import Any

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """Counts commands sent to the store: all of them, or only those named in `only`.

    With `keep`, it also keeps each counted command as sent (a test reads their filters);
    off by default, since a benchmark's inserts carry thousands of documents.
    """

    def __init__(self, only: Collection[str] | None = None, *, keep: bool = False) -> None:
        self.count = 0
        self.commands: list[dict[str, Any]] = []
        self._only, self._keep = only, keep

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Count one command."""
        if self._only is None or event.command_name in self._only:
            self.count += 1
            if self._keep:
                self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to do."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to do."""
