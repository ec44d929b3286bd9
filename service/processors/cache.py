"""`cache_image`: download an entity's image safely, verify it, store it, point the entity at it."""

import hashlib

from service.errors import ImageFetchError
from service.models.jobs import CacheDetails, CacheImageJob
from service.processing import JobRun
from service.resources import Providers


async def cache_image(job: CacheImageJob, run: JobRun[CacheDetails], providers: Providers) -> None:
    """Cache one image; the details record every step reached, also when one fails."""
    run.entity_type, run.entity_id, run.entity_name = (
        job.entity_type,
        job.entity_id,
        job.entity_name,
    )
    details = run.details
    details.source_url, details.before_url = job.source_url, job.image_url
    try:
        fetched = await providers.images.fetch(job.image_url)
    except ImageFetchError as exc:
        details.http_status = exc.status
        raise
    details.before_url_fetched = True
    details.http_status, details.content_type = fetched.status, fetched.content_type
    details.size_bytes = len(fetched.data)
    details.sha256 = hashlib.sha256(fetched.data).hexdigest()
    info = await providers.images.inspect(fetched.data)
    details.format, details.width, details.height = info.format, info.width, info.height
    stored = await providers.image_store.store(
        fetched.data,
        sha256=details.sha256,
        extension=info.extension,
        metadata={"entityType": job.entity_type, "entityId": job.entity_id},
    )
    details.after_url, details.cache_location = stored.url, stored.location
    details.cache_path, details.cloudflare_id = stored.path, stored.cloudflare_id
    details.deduplicated = stored.deduplicated
    fields = {"cachedImageUrl": stored.url, "cachedImageLocation": stored.location}
    run.fields_enriched = await providers.catalogue.update(job.entity_type, job.entity_id, fields)
