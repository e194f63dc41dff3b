"""URLs with which a client uploads straight into the platform store, signed for the
endpoint clients reach (DOWNLOAD_PLATFORM_PUBLIC_ENDPOINT), which may differ from the one
the service itself uses.

Signing is offline: the client is built with an explicit region, so it never asks the
store for the bucket's location (the public endpoint may not be reachable from here).
"""

from __future__ import annotations

import datetime as dt

from minio import Minio

from modelserve.common.objects import StoreConfig

DEFAULT_REGION = "us-east-1"


class Presigner:
    def __init__(self, config: StoreConfig, expires: dt.timedelta) -> None:
        self._client = Minio(
            config.endpoint,
            access_key=config.access_key,
            secret_key=config.secret_key.get_secret_value(),
            secure=config.secure,
            region=config.region or DEFAULT_REGION,
        )
        self.expires = expires

    def put(self, bucket: str, key: str) -> str:
        """A PUT of the whole object."""
        return self._client.get_presigned_url("PUT", bucket, key, expires=self.expires)

    def part(self, bucket: str, key: str, multipart_id: str, number: int) -> str:
        """A PUT of part `number` of the multipart upload `multipart_id`."""
        return self._client.get_presigned_url(
            "PUT",
            bucket,
            key,
            expires=self.expires,
            extra_query_params={"partNumber": str(number), "uploadId": multipart_id},
        )
