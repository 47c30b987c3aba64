"""Reading ``Image.S3Object``: from a local folder on the embedded default, or from any
S3-compatible endpoint through boto3.

Local layout: ``<s3_root>/<Bucket>/<Name>``. A Name that would resolve outside the
bucket folder (``..``, absolute paths, symlinks pointing out) is refused. Any
object that cannot be read raises ``InvalidS3ObjectException`` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visage.config import Settings
from visage.errors import ImageTooLargeException, InvalidS3ObjectException


def read_s3_object(s3_object: dict[str, Any], settings: Settings) -> bytes:
    bucket, name = s3_object["Bucket"], s3_object["Name"]
    version = s3_object.get("Version")
    if settings.s3_root is not None:
        if version is not None:
            raise InvalidS3ObjectException("The local S3 folder keeps no object versions; leave out S3Object.Version.")
        return _read_local(Path(settings.s3_root), bucket, name, settings.max_s3_image_bytes)
    if settings.s3_endpoint_url is not None:
        return _read_remote(settings.s3_endpoint_url, bucket, name, version, settings.max_s3_image_bytes)
    raise InvalidS3ObjectException(
        "This server reads no S3 objects: start it with --s3-root DIR (a local folder) "
        "or --s3-endpoint-url URL, or send Image.Bytes."
    )


def _read_local(root: Path, bucket: str, name: str, limit: int) -> bytes:
    base = root.resolve()
    path = (base / bucket / name).resolve()
    bucket_dir = (base / bucket).resolve()
    if not path.is_relative_to(bucket_dir) or not bucket_dir.is_relative_to(base):
        raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name} points outside the bucket; it is refused.")
    if not path.is_file():
        raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name} does not exist.")
    size = path.stat().st_size
    if size > limit:
        raise ImageTooLargeException(f"S3 object s3://{bucket}/{name} is {size:,} bytes; the limit is {limit:,}.")
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name} could not be read: {error.strerror}") from error


def _read_remote(endpoint: str, bucket: str, name: str, version: str | None, limit: int) -> bytes:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3", endpoint_url=endpoint)
    request: dict[str, Any] = {"Bucket": bucket, "Key": name}
    if version:
        request["VersionId"] = version
    try:
        response = client.get_object(**request)
        if response.get("ContentLength", 0) > limit:
            raise ImageTooLargeException(f"S3 object s3://{bucket}/{name} is over the {limit:,}-byte limit.")
        return response["Body"].read()
    except (ClientError, BotoCoreError) as error:
        raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name} could not be read: {error}") from error
