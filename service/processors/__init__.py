"""Processors: plain async functions that enrich one entity and report on a `JobRun`."""
