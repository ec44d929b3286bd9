"""Re-runs: a failed child joins its family again, a root starts a new one, both linked."""

import pytest

from service.client import EnrichmentClient
from service.demo.catalogue import ALBUMS, ARTISTS
from service.demo.providers import LocalProviders
from service.errors import InvalidRequestError
from service.models import JobStatus, LogEntry
from service.models.views import Timeline
from service.queries import latest_attempts
from tests.helpers import enrichment


async def failed_discogs_child(
    client: EnrichmentClient, providers: LocalProviders
) -> tuple[str, LogEntry]:
    """An artist root whose Discogs child failed for good (a 403, once)."""
    providers.fail("/discogs/artists/", 403, times=1)
    root_id = await client.kick_artist(mbid=ARTISTS["Mira Kestrel"].mbid)
    family = await client.wait_for_root(root_id, timeout=30)
    [failed] = [e for e in latest_attempts(family.children).values() if e.status == "failed"]
    assert failed.job_type == "discogs_artist"
    return root_id, failed


def latest(family: Timeline, job_id: str) -> LogEntry:
    return latest_attempts(family.entries)[job_id]


async def test_a_failed_child_is_re_run_in_its_own_family(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    root_id, failed = await failed_discogs_child(client, providers)
    again = await client.rerun(failed.job_id or "")
    family = await client.wait_for_root(root_id, timeout=30)
    rerun = latest(family, again)
    assert (rerun.status, rerun.rerun_of, rerun.parent_job_id) == (
        JobStatus.SUCCESS,
        failed.job_id,
        root_id,
    )
    assert rerun.is_root_job is False
    assert rerun.payload is not None
    assert rerun.payload["force"] is True
    # The failure stays on the timeline as it was; the root's own entry is untouched.
    assert latest(family, failed.job_id or "").status == JobStatus.FAILED
    assert [e.status for e in family.root] == [JobStatus.SUCCESS]
    assert await client.reruns_of(failed.job_id or "") == [again]


async def test_a_root_is_re_run_as_a_new_family_past_freshness(
    client: EnrichmentClient, providers: LocalProviders
) -> None:
    root_id = await client.kick_album(mbid=ALBUMS["Northern Drift"].mbid)
    first = await client.wait_for_root(root_id, timeout=30)
    asked = len(providers.musicbrainz_requests())
    again = await client.rerun(root_id)
    family = await client.wait_for_root(again, timeout=30)
    [root] = family.root
    assert (root.is_root_job, root.rerun_of, root.status) == (True, root_id, JobStatus.SUCCESS)
    assert root.relied_on is None  # forced: asked again, not skipped as fresh
    assert len(providers.musicbrainz_requests()) > asked
    assert len(family.children) == len(first.children)
    assert {c.parent_job_id for c in family.children} == {again}
    assert all(c.rerun_of is None for c in family.children)  # children are ordinary


async def test_what_cannot_be_re_run_says_why(client: EnrichmentClient) -> None:
    root_id = await client.kick_album(mbid=ALBUMS["Northern Drift"].mbid)
    family = await client.wait_for_root(root_id, timeout=30)
    succeeded = family.children[0].job_id or ""
    with pytest.raises(InvalidRequestError, match="only a failed child, or a root"):
        await client.rerun(succeeded)
    with pytest.raises(InvalidRequestError, match="no job 'nope' in the log"):
        await client.rerun("nope")


async def test_the_cli_re_runs_a_job_and_says_why_not(
    client: EnrichmentClient, providers: LocalProviders, settings_env: dict[str, str]
) -> None:
    root_id, failed = await failed_discogs_child(client, providers)
    done = await enrichment(settings_env, "rerun", failed.job_id or "", "--wait", "30")
    assert done.returncode == 0, done.stderr
    again = done.stdout.split()[0]
    rerun = latest(await client.timeline(root_id), again)
    assert (rerun.rerun_of, rerun.status) == (failed.job_id, JobStatus.SUCCESS)
    # The timeline links them both ways.
    assert f"re-run as {again[:8]}" in done.stdout
    assert f"re-run of {(failed.job_id or '')[:8]}" in done.stdout
    refused = await enrichment(settings_env, "rerun", "nope")
    assert refused.returncode == 1
    assert "no job 'nope' in the log to re-run" in refused.stdout
