"""The worker entry point for `taskiq worker service.worker:broker`."""

from service.broker import create_broker
from service.config import Settings
from service.metrics_server import WorkerMetrics
from service.redaction import protect

settings = Settings()
# Before anything is logged: every record of this worker process passes through redaction.
protect(*settings.secret_values())
broker = create_broker(settings)
# Prometheus metrics on METRICS_PORT, one port for all of this worker's processes.
if settings.metrics_port is not None:
    broker.add_middlewares(WorkerMetrics(settings))
