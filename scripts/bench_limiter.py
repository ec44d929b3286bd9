"""The shared rate limiter alone: how much of a provider's budget it uses, measured there.

    uv run python -m scripts.bench_limiter --rate 4 --seconds 20 --clients 4 --tasks 24

`--clients` limiters (as many worker processes) share one budget in Redis; `--tasks` loops
ask the local MusicBrainz look-alike, which refuses (503) a request over `--rate` in any one
second, for one artist as fast as the budget allows. Demand always exceeds the budget, so
the share shows what the limiter leaves unused; `scripts.bench_budget` measures the whole
pipeline, where the store and the jobs' own work also set the pace. Asserts nothing.
"""

import argparse
import asyncio
import time

from limits import parse

from service.config import Settings
from service.demo.catalogue import ARTISTS
from service.demo.providers import LocalProviders
from service.providers.http import ProviderApi, make_provider_client
from service.providers.musicbrainz import MusicBrainzClient
from service.providers.ratelimit import SharedRateLimiter


async def measure(rate: int, seconds: float, clients: int, tasks: int) -> str:
    """Run the loops against a provider at `rate`/s; the figures as one line."""
    with LocalProviders(musicbrainz_rate_per_second=rate) as local:
        settings = Settings.model_validate({"MUSICBRAINZ_BASE_URL": local.musicbrainz_url})
        key = f"bench-limiter-{time.time_ns()}"
        limit = parse(f"{rate}/second")
        limiters = [
            SharedRateLimiter(settings.rate_limit_storage, limit, key) for _ in range(clients)
        ]
        async with make_provider_client(settings, "MusicBrainz", local.musicbrainz_url) as http:
            apis = [ProviderApi("MusicBrainz", http, lim, retry_attempts=1) for lim in limiters]
            stop = time.monotonic() + seconds

            async def loop(index: int) -> None:
                client = MusicBrainzClient(apis[index % clients])
                while time.monotonic() < stop:
                    await client.get_artist(ARTISTS["Mira Kestrel"].mbid)

            await asyncio.gather(*(loop(i) for i in range(tasks)))
        await limiters[0].reset()
        for limiter in limiters:
            await limiter.close()
    arrivals = sorted(request.at for request in local.requests)
    busy = arrivals[-1] - arrivals[0]
    refused = sum(request.status == 503 for request in local.requests)
    return (
        f"{rate}/second, {clients} clients, {tasks} tasks: {len(arrivals)} arrivals in "
        f"{busy:.1f} s, share {len(arrivals) / (rate * busy):.1%}, 503s {refused}"
    )


def main() -> None:
    """Parse the options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=4, help="requests a second (both sides)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4, help="limiters sharing the budget")
    parser.add_argument("--tasks", type=int, default=24, help="loops asking at once")
    args = parser.parse_args()
    print(asyncio.run(measure(args.rate, args.seconds, args.clients, args.tasks)))


if __name__ == "__main__":
    main()
