"""The completion message a finished job publishes to its NotificationChannel's SNS topic.

Rekognition publishes ``{JobId, Status, API, JobTag, Timestamp, Video{S3ObjectName,
S3Bucket}}`` as the SNS message; subscribers (an SQS queue, a Lambda) read it with
``json.loads(body["Message"])``. Visage publishes the same message through the SNS
endpoint the server is given (``--sns-endpoint-url``, credentials from the usual AWS
variables). Without one, no notification is sent and the Get operations still work.
A notification that cannot be published is logged; the job's result does not change.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from visage.store.base import VideoJob

log = logging.getLogger("visage.jobs")


def completion_message(job: VideoJob) -> dict[str, Any]:
    """Rekognition's completion message for a finished job."""
    s3_object = job.request["Video"]["S3Object"]
    finished = job.finished_at or datetime.now(UTC)
    message: dict[str, Any] = {
        "JobId": job.job_id,
        "Status": job.status,
        "API": job.operation,
        "Timestamp": int(finished.timestamp() * 1000),
        "Video": {"S3ObjectName": s3_object["Name"], "S3Bucket": s3_object["Bucket"]},
    }
    if "JobTag" in job.request:
        message["JobTag"] = job.request["JobTag"]
    return message


def publish_completion(job: VideoJob, sns_endpoint_url: str | None) -> None:
    """Publishes the job's completion message to its topic, if it asked for one and there is
    an SNS endpoint to publish through."""
    channel = job.request.get("NotificationChannel")
    if channel is None or sns_endpoint_url is None:
        return
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    topic = channel["SNSTopicArn"]
    region = topic.split(":")[3]  # arn:aws:sns:<region>:<account>:<name>
    try:
        client = boto3.client("sns", endpoint_url=sns_endpoint_url, region_name=region)
        client.publish(TopicArn=topic, Message=json.dumps(completion_message(job)))
    except (BotoCoreError, ClientError) as error:
        log.warning("job %s: the completion message could not be published to %s: %s", job.job_id, topic, error)
