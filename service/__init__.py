"""Music catalogue enrichment: lineage-linked background jobs on Taskiq + Redis."""

__version__ = "0.1.0"
