"""Counting the commands a benchmark sends to the store (a PyMongo command listener)."""

from collections.abc import Collection

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """Counts commands sent to the store: all of them, or only those named in `only`."""

    def __init__(self, only: Collection[str] | None = None) -> None:
        self.count = 0
        self._only = only

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Count one command."""
        self.count += self._only is None or event.command_name in self._only

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to do."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to do."""
