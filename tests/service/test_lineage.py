"""Lineage: roots are flagged, every descendant points at the root, however deep."""

from collections import Counter
from typing import Any

import pytest

from service.client import EnrichmentClient
from service.demo.catalogue import ALBUMS, ARTISTS
from service.models import JobStatus
from service.models.base import CamelModel
from service.models.jobs import AlbumJob, JobPayload
from service.processing import AnySpec, JobRun, JobSpec


class ChainJob(JobPayload):
    """Test-only payload: spawn a chain of `depth` more jobs."""

    depth: int


class ChainDetails(CamelModel):
    """Test-only details."""

    depth: int | None = None


async def run_chain(job: ChainJob, run: JobRun[ChainDetails], providers: Any) -> None:
    run.details.depth = job.depth
    run.entity_id = run.entity_name = f"level-{job.depth}"
    if job.depth > 0:
        run.spawn("test_chain", ChainJob(depth=job.depth - 1))


CHAIN = JobSpec("test_chain", "album", ChainJob, ChainDetails, run_chain)


async def test_album_root_and_children_flags(client: EnrichmentClient) -> None:
    root_id = await client.kick_album(title="Northern Drift", artist="Vela Nord")
    family = await client.wait_for_root(root_id, timeout=30)

    [root] = family.root
    assert root.is_root_job is True
    assert root.parent_job_id is None
    assert root.job_id == root_id
    by_type = Counter(child.job_type for child in family.children)
    assert by_type == {"enrich_artist": 2, "discogs_artist": 2, "cache_image": 3}
    artists = [c for c in family.children if c.job_type == "enrich_artist"]
    assert {c.entity_name for c in artists} == {"Vela Nord", "Mira Kestrel"}
    for child in family.children:
        assert child.is_root_job is False
        assert child.parent_job_id == root_id
    cover = next(c for c in family.children if c.entity_type == "album")
    assert sorted(root.spawned_job_ids) == sorted([cover.job_id, *(c.job_id for c in artists)])


@pytest.fixture
def extra_specs() -> tuple[AnySpec, ...]:
    return (CHAIN,)


async def test_four_level_chain_is_flat(client: EnrichmentClient) -> None:

    root_id = "chain-root-" + client.settings.queue_name
    await client.kick("test_chain", {"depth": 3}, job_id=root_id)
    family = await client.wait_for_root(root_id, timeout=30)

    levels = [
        e.details["depth"] if isinstance(e.details, dict) else e.details.depth
        for e in family.entries
    ]
    assert levels == [3, 2, 1, 0]
    assert [e.is_root_job for e in family.entries] == [True, False, False, False]
    # Every descendant names the ROOT, never its immediate parent ...
    assert {e.parent_job_id for e in family.children} == {root_id}
    # ... while spawnedJobIds keep the real spawn tree: a chain root → 1 → 2 → 3.
    for parent, child in zip(family.entries, family.entries[1:], strict=False):
        assert parent.spawned_job_ids == [child.job_id]
    assert all(e.status == JobStatus.SUCCESS for e in family.entries)


async def test_child_failure_leaves_root_entry_alone(client: EnrichmentClient) -> None:
    root_id = await client.kick_album(mbid=ALBUMS["Copper Wires"].mbid)
    family = await client.wait_for_root(root_id, timeout=60)

    [root] = family.root
    assert root.status == JobStatus.SUCCESS
    assert root.error is None
    assert {c.status for c in family.children} == {JobStatus.FAILED}
    assert {(c.job_type, c.entity_id) for c in family.children} == {
        ("enrich_artist", ARTISTS["Static Orchard"].mbid),
        ("cache_image", ALBUMS["Copper Wires"].mbid),
    }


async def test_album_artist_discogs_cache_chain_is_four_levels_deep_and_flat(
    client: EnrichmentClient,
) -> None:
    root_id = await client.kick_album(title="Tidal Glass", artist="Vela Nord")
    family = await client.wait_for_root(root_id, timeout=30)

    spawner = {child: e.job_id for e in family.entries for child in e.spawned_job_ids}
    types = {e.job_id: e.job_type for e in family.entries}
    artist_image = next(
        e for e in family.children if e.job_type == "cache_image" and e.entity_type == "artist"
    )
    chain = [artist_image.job_id]
    while chain[-1] in spawner:
        chain.append(spawner[chain[-1]])
    assert [types[j] for j in reversed(chain)] == [
        "enrich_album",
        "enrich_artist",
        "discogs_artist",
        "cache_image",
    ]
    assert chain[-1] == root_id
    assert {e.parent_job_id for e in family.children} == {root_id}  # flat at every depth
    assert all(e.status == JobStatus.SUCCESS for e in family.entries)


class FanoutJob(JobPayload):
    """Test-only: a root that enriches several albums at once."""

    titles: list[str]


async def run_fanout(job: FanoutJob, run: JobRun[ChainDetails], providers: Any) -> None:
    run.entity_id = run.entity_name = "catalogue"
    for title in job.titles:
        run.spawn("enrich_album", AlbumJob(mbid=ALBUMS[title].mbid))


FANOUT = JobSpec("test_fanout", "album", FanoutJob, ChainDetails, run_fanout)


class TestOncePerEntity:
    @pytest.fixture
    def extra_specs(self) -> tuple[AnySpec, ...]:
        return (FANOUT,)

    async def test_an_artist_on_several_albums_is_enriched_and_matched_once(
        self, client: EnrichmentClient
    ) -> None:
        titles = ["Tidal Glass", "Northern Drift", "Paper Harbors"]
        await client.kick("test_fanout", {"titles": titles}, job_id="fanout-root")
        family = await client.wait_for_root("fanout-root", timeout=60)

        runs = Counter((e.job_type, e.entity_name) for e in family.children)
        assert {name for (kind, name) in runs if kind == "enrich_album"} == set(titles)
        # Vela Nord is on two of the albums, Mira Kestrel on two: each runs once.
        for name in ("Vela Nord", "Mira Kestrel", "Harbor Lights"):
            assert runs[("enrich_artist", name)] == 1
            assert runs[("discogs_artist", name)] == 1
        assert runs[("cache_image", "Vela Nord")] == 1
        # The same fan-out in another family is not held back by this one's claims (forced:
        # otherwise it would rightly rely on this family's fresh answers).
        await client.kick(
            "test_fanout", {"titles": titles[:1], "force": True}, job_id="fanout-other"
        )
        other = await client.wait_for_root("fanout-other", timeout=60)
        assert ("enrich_artist", "Vela Nord") in {
            (e.job_type, e.entity_name) for e in other.children
        }
