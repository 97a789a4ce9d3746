"""``poller redrive`` for stream mappings, end to end on real servers: a worker discards records
to its on-failure destination, the handler is fixed, and the redrive hands the records over
again and removes the on-failure records (moto: Kinesis + SQS, DynamoDB Streams + S3 and SNS;
tansu: Kafka + a kafka:// topic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from poller.config import parse_config
from poller.runtime.worker import Worker
from tests.kit import run_until_idle
from tests.kit.aws import create_stream, moto_clients
from tests.kit.configs import moto_aws
from tests.kit.names import ACCOUNT, REGION, new_id
from tests.kit.redrive_kit import KINESIS_TEXTS, FlakyHandler, redrive, write_config

pytestmark = pytest.mark.integration


def _config(endpoint: str, mapping: dict[str, Any], handler: FlakyHandler) -> dict[str, Any]:
    return {
        "aws": moto_aws(endpoint),
        "store": {"url": "memory://"},
        "worker": {"idle_poll_seconds": 0.05, "shutdown_grace_seconds": 5},
        "functions": [
            {"FunctionName": "redriven", "Handler": handler.reference, "Isolation": "thread"}
        ],
        "mappings": [
            {
                "StartingPosition": "TRIM_HORIZON",
                "FunctionName": "redriven",
                "BatchSize": 2,
                "MaximumRetryAttempts": 0,
                "RetryBackoffSeconds": 0.01,
                "RetryBackoffMaxSeconds": 0.02,
                **mapping,
            }
        ],
    }


async def _queue_bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message body of the queue (received, then made visible again)."""
    found: dict[str, Any] = {}
    while True:
        got = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages") or []
        if not messages:
            break
        for message in messages:
            found[message["MessageId"]] = message
    for message in found.values():
        await sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    bodies = []
    for message in found.values():
        try:
            bodies.append(json.loads(message["Body"]))
        except ValueError:
            bodies.append({"raw": message["Body"]})
    return bodies


def _ranges(bodies: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted(
        (b["KinesisBatchInfo"]["startSequenceNumber"], b["KinesisBatchInfo"]["endSequenceNumber"])
        for b in bodies
        if "KinesisBatchInfo" in b
    )


async def test_kinesis_records_redriven_from_sqs_after_the_handler_is_fixed(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    uuid = new_id()
    handler = FlakyHandler(tmp_path, f"kin_{uuid[:8]}", monkeypatch, KINESIS_TEXTS)
    async with moto_clients(moto_endpoint, "kinesis", "sqs") as (kinesis, sqs):
        stream_arn = await create_stream(kinesis, f"redrive-{uuid}")
        queue = await sqs.create_queue(QueueName=f"redrive-dlq-{uuid}")
        queue_url = queue["QueueUrl"]
        queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:redrive-dlq-{uuid}"
        data = {
            "UUID": uuid,
            "EventSourceArn": stream_arn,
            "DestinationConfig": {"OnFailure": {"Destination": queue_arn}},
        }
        config = _config(moto_endpoint, data, handler)
        path = write_config(tmp_path / "config.toml", config)
        texts = ["ok-0", "bad-1", "ok-2", "bad-3", "ok-4", "ok-5"]
        for text in texts:
            await kinesis.put_record(StreamARN=stream_arn, Data=text.encode(), PartitionKey="k")
        await run_until_idle(Worker(parse_config(config)))
        first = _ranges(await _queue_bodies(sqs, queue_url))
        assert len(first) == 2, "two batches of two records should have been discarded"
        # Another mapping's record (another function) shares the queue; it is never touched.
        other = json.loads(json.dumps(await _queue_bodies(sqs, queue_url)))[0]
        other["requestContext"]["functionArn"] += "-other"
        await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(other))
        handed_before = len(handler.texts())

        code, out, _ = await redrive(capsys, path, "--mapping", uuid, "--dry-run", "--json")
        report = json.loads(out)
        assert code == 0, out
        fates = sorted(r["fate"] for r in report["records"])
        assert fates == ["other mapping", "would redrive", "would redrive"]
        assert all(r["retained"] == 2 for r in report["records"] if r["fate"] == "would redrive")
        assert len(handler.texts()) == handed_before, "a dry run invoked the function"
        assert len(await _queue_bodies(sqs, queue_url)) == 3, "a dry run removed a record"

        # Still broken: both batches fail again, are recorded anew, and the old records go.
        code, out, _ = await redrive(capsys, path, "--mapping", uuid, "--json")
        assert code == 1, out
        fates = sorted((r["fate"], r["removed"]) for r in json.loads(out)["records"])
        assert fates == [("failed again", True), ("failed again", True), ("other mapping", False)]
        bodies = await _queue_bodies(sqs, queue_url)
        assert len(bodies) == 3, bodies
        assert _ranges(bodies) == sorted(first + [r for r in _ranges([other])]), bodies
        request_ids = {b["requestContext"]["requestId"] for b in bodies}
        assert other["requestContext"]["requestId"] in request_ids

        handler.fix()
        seen_before = len(handler.texts())
        code, out, _ = await redrive(capsys, path, "--mapping", uuid)
        assert code == 0, out
        rows = [line.split() for line in out.splitlines()[2:]]
        assert sorted(row[5] for row in rows) == ["other", "redriven", "redriven"], out
        assert out.count("redriven 2 records") == 2, out
        assert handler.texts()[seen_before:] == ["ok-0", "bad-1", "ok-2", "bad-3"]
        left = await _queue_bodies(sqs, queue_url)
        assert [b["requestContext"]["functionArn"] for b in left] == [
            other["requestContext"]["functionArn"]
        ]
