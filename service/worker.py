"""The worker entry point for `taskiq worker service.worker:broker`."""

from service.broker import create_broker
from service.config import Settings

broker = create_broker(Settings())
