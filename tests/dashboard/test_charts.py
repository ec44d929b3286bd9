"""The waterfall's time axis: offsets from the family's start, not clock fractions."""

from datetime import UTC, datetime, timedelta

from dashboard.charts import timeline_frame, waterfall
from service.models import LogEntry

# A start whose clock fractions say nothing: .900, then .100 and .400 of the next second.
START = datetime(2025, 5, 1, 12, 0, 0, 900_000, tzinfo=UTC)


def family() -> list[LogEntry]:
    def at(seconds: float) -> datetime:
        return START + timedelta(seconds=seconds)

    return [
        LogEntry(jobId="root", jobType="enrich_album", status="success", isRootJob=True,
                 queuedAt=at(0), startedAt=at(0), finishedAt=at(2.0), durationMs=2000),
        LogEntry(jobId="cover", jobType="cache_image", status="success", parentJobId="root",
                 queuedAt=at(1.0), startedAt=at(1.2), finishedAt=at(1.5), durationMs=300),
        LogEntry(jobId="artist", jobType="enrich_artist", status="queued", parentJobId="root",
                 queuedAt=at(2.0), startedAt=at(2.0)),
    ]  # fmt: skip


def test_bars_are_placed_in_seconds_from_the_roots_start() -> None:
    frame = timeline_frame(family(), now=START + timedelta(seconds=3.5))
    rows = list(frame[["kind", "from", "to", "at"]].itertuples(index=False, name=None))
    assert rows == [
        ("run", 0.0, 2.0, "+0.0 s"),
        ("wait", 1.0, 1.2, "+1.0 s"),
        ("run", 1.2, 1.5, "+1.2 s"),
        ("wait", 2.0, 3.5, "+2.0 s"),  # still queued: its wait grows to now
    ]


def test_the_time_axis_reads_as_offsets() -> None:
    spec = waterfall(family()).to_dict()
    x = spec["layer"][0]["encoding"]["x"]
    assert (x["field"], x["type"]) == ("from", "quantitative")
    # Vega formats each tick value v as "+" + format(v, ".1f") + " s": "+0.0 s", "+1.2 s".
    assert x["axis"]["labelExpr"] == "'+' + format(datum.value, '.1f') + ' s'"
    assert spec["layer"][0]["encoding"]["x2"]["field"] == "to"
    assert spec["layer"][0]["title"] == "seconds from 2025-05-01 12:00:00 UTC"
