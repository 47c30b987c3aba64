"""Reading ``S3Object`` members: from a local folder on the embedded default, or from any
S3-compatible endpoint through boto3.

Local layout: ``<s3_root>/<Bucket>/<Name>``. A Name that would resolve outside the
bucket folder (``..``, absolute paths, symlinks pointing out) is refused. Any
object that cannot be read raises ``InvalidS3ObjectException`` naming it.

Images are read whole (:func:`read_s3_object`); videos are opened as a seekable stream
(:func:`open_s3_object`), read a piece at a time: from the endpoint, by ranged GETs.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

from visage.config import Settings
from visage.errors import ImageTooLargeException, InvalidS3ObjectException

#: Bytes fetched by one ranged GET of a video stream.
RANGE_BYTES = 4 * 1024 * 1024


def read_s3_object(s3_object: dict[str, Any], settings: Settings) -> bytes:
    bucket, name = s3_object["Bucket"], s3_object["Name"]
    version = s3_object.get("Version")
    if settings.s3_root is not None:
        if version is not None:
            raise InvalidS3ObjectException("The local S3 folder keeps no object versions; leave out S3Object.Version.")
        return _read_local(Path(settings.s3_root), bucket, name, settings.max_s3_image_bytes)
    if settings.s3_endpoint_url is not None:
        return _read_remote(settings.s3_endpoint_url, bucket, name, version, settings.max_s3_image_bytes)
    raise _no_s3()


def open_s3_object(s3_object: dict[str, Any], settings: Settings) -> tuple[BinaryIO, int]:
    """The object as a seekable binary stream, and its size in bytes; the caller closes the stream."""
    bucket, name = s3_object["Bucket"], s3_object["Name"]
    version = s3_object.get("Version")
    if settings.s3_root is not None:
        if version is not None:
            raise InvalidS3ObjectException("The local S3 folder keeps no object versions; leave out S3Object.Version.")
        path = _local_path(Path(settings.s3_root), bucket, name)
        try:
            return path.open("rb"), path.stat().st_size
        except OSError as error:
            raise InvalidS3ObjectException(
                f"S3 object s3://{bucket}/{name} could not be read: {error.strerror}"
            ) from error
    if settings.s3_endpoint_url is not None:
        stream = _RangedObject(settings.s3_endpoint_url, bucket, name, version)
        return io.BufferedReader(stream, buffer_size=RANGE_BYTES), stream.size
    raise _no_s3()


def _no_s3() -> InvalidS3ObjectException:
    return InvalidS3ObjectException(
        "This server reads no S3 objects: start it with --s3-root DIR (a local folder) "
        "or --s3-endpoint-url URL, or send Image.Bytes."
    )


def _local_path(root: Path, bucket: str, name: str) -> Path:
    """The file of an object in the local folder; refused if it is outside its bucket or missing."""
    base = root.resolve()
    try:
        path = (base / bucket / name).resolve()
        bucket_dir = (base / bucket).resolve()
        if not path.is_relative_to(bucket_dir) or not bucket_dir.is_relative_to(base):
            raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name} points outside the bucket; it is refused.")
        if not path.is_file():
            raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name} does not exist.")
    except (ValueError, OSError) as error:  # a NUL byte, a name too long for the file system...
        raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name!r} cannot be read here: {error}.") from None
    return path


def _read_local(root: Path, bucket: str, name: str, limit: int) -> bytes:
    path = _local_path(root, bucket, name)
    size = path.stat().st_size
    if size > limit:
        raise ImageTooLargeException(f"S3 object s3://{bucket}/{name} is {size:,} bytes; the limit is {limit:,}.")
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name} could not be read: {error.strerror}") from error


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


def _read_remote(endpoint: str, bucket: str, name: str, version: str | None, limit: int) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    request: dict[str, Any] = {"Bucket": bucket, "Key": name}
    if version:
        request["VersionId"] = version
    try:
        response = _client(endpoint).get_object(**request)
        if response.get("ContentLength", 0) > limit:
            raise ImageTooLargeException(f"S3 object s3://{bucket}/{name} is over the {limit:,}-byte limit.")
        return response["Body"].read()
    except (ClientError, BotoCoreError) as error:
        raise InvalidS3ObjectException(f"S3 object s3://{bucket}/{name} could not be read: {error}") from error


class _RangedObject(io.RawIOBase):
    """An object of an S3-compatible endpoint as a seekable raw stream: one ranged GET per read."""

    def __init__(self, endpoint: str, bucket: str, name: str, version: str | None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (ClientError, BotoCoreError)
        self._client = _client(endpoint)
        self._where = f"s3://{bucket}/{name}"
        self._request: dict[str, Any] = {"Bucket": bucket, "Key": name}
        if version:
            self._request["VersionId"] = version
        try:
            self.size = int(self._client.head_object(**self._request)["ContentLength"])
        except self._errors as error:
            raise InvalidS3ObjectException(f"S3 object {self._where} could not be read: {error}") from error
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._position >= self.size or len(view) == 0:
            return 0
        last = min(self._position + len(view), self.size) - 1
        try:
            response = self._client.get_object(**self._request, Range=f"bytes={self._position}-{last}")
            data = response["Body"].read()
        except self._errors as error:
            raise InvalidS3ObjectException(f"S3 object {self._where} could not be read: {error}") from error
        view[: len(data)] = data
        self._position += len(data)
        return len(data)
