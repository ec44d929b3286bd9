"""`EnrichmentClient`: waiting for families, roots with roll-ups, timelines in order."""

import time

import pytest

from service.client import EnrichmentClient
from service.demo.catalogue import ALBUMS, ARTISTS
from service.demo.providers import LocalProviders
from service.errors import WaitTimeoutError
from service.models import JobError, LogEntry
from service.queries import latest_attempts, pending_jobs


async def test_wait_returns_only_when_every_spawned_job_is_terminal(
    client: EnrichmentClient,
) -> None:
    root_id = await client.kick_album(title="Paper Harbors", artist="Harbor Lights")
    family = await client.wait_for_root(root_id, timeout=30)

    latest = latest_attempts(family.entries)
    spawned = {child for entry in family.entries for child in entry.spawned_job_ids}
    # Two artists, their two Discogs matches, one artist image: five spawned in all.
    assert len(spawned) == 5
    assert spawned == {entry.job_id for entry in family.children}
    assert spawned <= set(latest)
    assert all(latest[job].is_terminal(client.settings.job_max_attempts) for job in spawned)


async def test_wait_follows_slow_children(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    # The root finishes at once; its children are held back by MusicBrainz 503s.
    providers.fail("/ws/2/artist/", 503, times=4)
    root_id = await client.kick_album(mbid=ALBUMS["Northern Drift"].mbid)
    family = await client.wait_for_root(root_id, timeout=30)
    assert len(family.children) >= 2
    assert {c.status for c in latest_attempts(family.children).values()} == {"success"}


async def test_wait_times_out_with_a_clear_error(client: EnrichmentClient) -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match=r"job family nope not finished after 0.5s.*nope"):
        await client.wait_for_root("nope", timeout=0.5)
    assert time.monotonic() - started < 5


async def test_roots_newest_first_with_family_rollups(client: EnrichmentClient) -> None:
    first = await client.kick_album(mbid=ALBUMS["Copper Wires"].mbid)
    await client.wait_for_root(first, timeout=30)
    second = await client.kick_album(title="Northern Drift", artist="Vela Nord")
    await client.wait_for_root(second, timeout=30)

    roots = await client.roots()
    assert [r.root.job_id for r in roots] == [second, first]
    by_id = {r.root.job_id: r for r in roots}
    # Copper Wires: its cover is not an image, its artist fails three attempts (one job).
    assert (by_id[first].children_total, by_id[first].children_failed) == (2, 2)
    # Northern Drift: cover, two artists, two Discogs matches, two artist images.
    assert (by_id[second].children_total, by_id[second].children_failed) == (7, 0)
    assert by_id[second].last_finished_at is not None
    assert [r.root.job_id for r in await client.roots(status="success", limit=1)] == [second]
    assert await client.roots(job_type="enrich_artist") == []


async def test_timeline_is_root_first_then_by_start(client: EnrichmentClient) -> None:
    root_id = await client.kick_album(title="Northern Drift", artist="Vela Nord")
    family = await client.wait_for_root(root_id, timeout=30)
    timeline = await client.timeline(root_id)

    assert timeline.entries[0].job_id == root_id
    starts = [entry.started_at for entry in timeline.children]
    assert starts == sorted(s for s in starts if s is not None)
    assert [e.job_id for e in timeline.entries] == [e.job_id for e in family.entries]


async def test_a_retried_root_is_listed_once_by_its_latest_attempt(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    flaky = ARTISTS["Harbor Lights"].mbid
    providers.fail(f"/ws/2/artist/{flaky}", 500, times=client.settings.provider_retry_attempts)
    recovered = await client.kick_artist(mbid=flaky)
    await client.wait_for_root(recovered, timeout=30)
    broken = await client.kick_artist(mbid=ARTISTS["Static Orchard"].mbid)
    await client.wait_for_root(broken, timeout=30)

    roots = await client.roots()
    assert [(r.root.job_id, r.root.attempt, r.root.status) for r in roots] == [
        (broken, client.settings.job_max_attempts, "failed"),
        (recovered, 2, "success"),
    ]
    assert [r.root.job_id for r in await client.roots(status="failed")] == [broken]
    assert [r.root.job_id for r in await client.roots(status="success")] == [recovered]
    assert [r.root.job_id for r in await client.roots(skip=1)] == [recovered]


def test_pending_follows_children_of_every_attempt() -> None:
    first = LogEntry(job_id="r", attempt=1, status="failed", spawned_job_ids=["a"],
                     error=JobError(type="X", message="", retryable=True))  # fmt: skip
    last = LogEntry(job_id="r", attempt=2, status="failed",
                    error=JobError(type="X", message="", retryable=False))  # fmt: skip
    assert pending_jobs("r", [first, last], max_attempts=3) == ["a"]
    child = LogEntry(job_id="a", attempt=1, status="success")
    assert pending_jobs("r", [first, last, child], max_attempts=3) == []
