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
from poller.sources.kafka.destination import FAILURE_HEADER
from tests.integration.kafka_helpers import (
    committed,
    create_topic,
    kafka_mapping,
    produce,
    read_all,
    wait_committed,
)
from tests.kit import run_until_idle
from tests.kit.aws import create_stream, create_table_with_stream, moto_clients
from tests.kit.configs import moto_aws
from tests.kit.names import ACCOUNT, REGION, new_id
from tests.kit.redrive_kit import (
    DYNAMODB_TEXTS,
    KAFKA_TEXTS,
    KINESIS_TEXTS,
    FlakyHandler,
    redrive,
    write_config,
)

pytestmark = pytest.mark.integration


def _config(
    endpoint: str, mapping: dict[str, Any], handler: FlakyHandler, isolation: str = "thread"
) -> dict[str, Any]:
    """A config with one stream mapping invoking ``handler`` (in the worker's threads, or in
    process environments started in the current directory)."""
    return {
        "aws": moto_aws(endpoint),
        "store": {"url": "memory://"},
        "worker": {"idle_poll_seconds": 0.05, "shutdown_grace_seconds": 5},
        "functions": [
            {"FunctionName": "redriven", "Handler": handler.reference, "Isolation": isolation}
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


def _kinesis_failure(
    stream_arn: str, function_arn: str, shard: str, first: str, last: str, size: int
) -> dict[str, Any]:
    """An on-failure record as a Kinesis mapping writes it."""
    return {
        "requestContext": {
            "requestId": new_id(),
            "functionArn": function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2026-12-01T10:00:00.000Z",
        "KinesisBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "approximateArrivalOfFirstRecord": "2026-12-01T10:00:00.000Z",
            "approximateArrivalOfLastRecord": "2026-12-01T10:00:00.000Z",
            "batchSize": size,
            "streamArn": stream_arn,
        },
    }


async def test_ranges_no_longer_retained_and_malformed_records_are_listed_and_kept(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """moto never trims a stream, so the ranges that are gone are a shard that does not exist
    and sequence numbers past the shard's last record."""
    uuid = new_id()
    handler = FlakyHandler(tmp_path, f"gone_{uuid[:8]}", monkeypatch, KINESIS_TEXTS)
    async with moto_clients(moto_endpoint, "kinesis", "sqs") as (kinesis, sqs):
        stream_arn = await create_stream(kinesis, f"gone-{uuid}")
        queue_url = (await sqs.create_queue(QueueName=f"gone-dlq-{uuid}"))["QueueUrl"]
        config = _config(moto_endpoint, {"UUID": uuid, "EventSourceArn": stream_arn}, handler)
        path = write_config(tmp_path / "config.toml", config)
        for text in ("a-0", "a-1", "a-2"):
            await kinesis.put_record(StreamARN=stream_arn, Data=text.encode(), PartitionKey="k")
        shard = "shardId-000000000000"
        function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:redriven"
        for body in (
            _kinesis_failure(stream_arn, function_arn, shard, "2", "3", 2),
            _kinesis_failure(stream_arn, function_arn, "shardId-000000000099", "1", "2", 2),
            _kinesis_failure(stream_arn, function_arn, shard, "900", "901", 2),
            _kinesis_failure(stream_arn, function_arn, shard, "3", "5", 3),
        ):
            await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
        await sqs.send_message(QueueUrl=queue_url, MessageBody="not an on-failure record")

        code, out, _ = await redrive(capsys, path, "--mapping", uuid, "--from", queue_url, "--json")
        assert code == 1, out
        report = json.loads(out)
        by_range = {
            (r["partition"], r["first"]): (r["fate"], r["retained"], r["removed"])
            for r in report["records"]
        }
        assert by_range == {
            (shard, "2"): ("redriven", 2, True),
            ("shardId-000000000099", "1"): ("not retained", 0, False),
            (shard, "900"): ("not retained", 0, False),
            (shard, "3"): ("not retained", 1, False),
            (None, None): ("malformed", None, False),
        }, report
        assert handler.texts() == ["a-1", "a-2"]
        bodies = await _queue_bodies(sqs, queue_url)
        assert len(bodies) == 4, "the kept records must stay in the queue"
        assert {"raw": "not an on-failure record"} in bodies


async def _put_items(dynamodb: Any, table: str, keys: list[str]) -> None:
    for key in keys:
        await dynamodb.put_item(TableName=table, Item={"pk": {"S": key}, "sk": {"N": "1"}})


async def test_dynamodb_records_redriven_from_s3_objects(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    uuid = new_id()
    handler = FlakyHandler(tmp_path, f"ddb_{uuid[:8]}", monkeypatch, DYNAMODB_TEXTS)
    async with moto_clients(moto_endpoint, "dynamodb", "s3") as (dynamodb, s3):
        table = f"redrive-{uuid}"
        stream_arn = await create_table_with_stream(dynamodb, table)
        bucket = f"redrive-{uuid[:8]}"
        await s3.create_bucket(Bucket=bucket)
        data = {
            "UUID": uuid,
            "EventSourceArn": stream_arn,
            "DestinationConfig": {"OnFailure": {"Destination": f"arn:aws:s3:::{bucket}"}},
        }
        config = _config(moto_endpoint, data, handler)
        path = write_config(tmp_path / "config.toml", config)
        await _put_items(dynamodb, table, ["ok-0", "bad-1", "ok-2", "ok-3"])
        await run_until_idle(Worker(parse_config(config)))

        async def keys() -> list[str]:
            listed = await s3.list_objects_v2(Bucket=bucket)
            return sorted(item["Key"] for item in listed.get("Contents") or ())

        (discarded,) = await keys()
        assert discarded.startswith(f"aws/lambda/{uuid}/")
        # An object of another mapping's, outside the mapping's prefix, is not even listed.
        await s3.put_object(Bucket=bucket, Key="aws/lambda/other/x", Body=b"{}")
        # moto never trims: a copy naming a shard the stream no longer has stands for records
        # only the object's payload still holds.
        body = await (await s3.get_object(Bucket=bucket, Key=discarded))["Body"].read()
        copy = json.loads(body)
        copy["DDBStreamBatchInfo"]["shardId"] = "shardId-00000001700000000000-gone"
        for event in copy["payload"]["Records"]:
            event["dynamodb"]["Keys"]["pk"]["S"] += "-copy"
        gone = f"aws/lambda/{uuid}/shardId-gone/copy"
        await s3.put_object(Bucket=bucket, Key=gone, Body=json.dumps(copy).encode())

        code, out, _ = await redrive(capsys, path, "--mapping", uuid, "--dry-run", "--json")
        sources = {
            r["record"]: (r["records_from"], r["retained"]) for r in json.loads(out)["records"]
        }
        assert sources == {
            f"s3://{bucket}/{discarded}": ("source", 2),
            f"s3://{bucket}/{gone}": ("payload", 0),
        }, out

        handler.fix()
        seen = len(handler.texts())
        code, out, _ = await redrive(capsys, path, "--mapping", uuid)
        assert code == 0, out
        assert "redriven 2 records" in out and f"s3://{bucket}/{discarded}" in out, out
        assert "from the S3 payload" in out, out
        assert sorted(handler.texts()[seen:]) == ["bad-1", "bad-1-copy", "ok-0", "ok-0-copy"]
        copies = [text for text in handler.texts()[seen:] if text.endswith("-copy")]
        assert copies == ["ok-0-copy", "bad-1-copy"], "each shard's records keep their order"
        assert await keys() == ["aws/lambda/other/x"], "the redriven objects must be deleted"

        code, out, _ = await redrive(capsys, path, "--mapping", uuid, "--json")
        assert code == 0 and json.loads(out)["records"] == [], out


async def test_dynamodb_records_redriven_through_queues_subscribed_to_an_sns_topic(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """One queue gets SNS's envelope, the other raw messages: both are read; with two queues
    subscribed, which one to read is the operator's choice (``--from``). The function runs in
    process environments here, as it does by default."""
    monkeypatch.chdir(tmp_path)
    uuid = new_id()
    handler = FlakyHandler(tmp_path, f"sns_{uuid[:8]}", monkeypatch, DYNAMODB_TEXTS)
    async with moto_clients(moto_endpoint, "dynamodb", "sns", "sqs") as (dynamodb, sns, sqs):
        table = f"redrive-sns-{uuid}"
        stream_arn = await create_table_with_stream(dynamodb, table)
        topic_arn = (await sns.create_topic(Name=f"redrive-{uuid}"))["TopicArn"]
        queues = {}
        for raw in (False, True):
            name = f"redrive-sns-{'raw' if raw else 'env'}-{uuid}"
            url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
            attributes = {"RawMessageDelivery": "true"} if raw else {}
            await sns.subscribe(
                TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes
            )
            queues[raw] = (url, arn)
        data = {
            "UUID": uuid,
            "EventSourceArn": stream_arn,
            "DestinationConfig": {"OnFailure": {"Destination": topic_arn}},
        }
        config = _config(moto_endpoint, data, handler, isolation="process")
        path = write_config(tmp_path / "config.toml", config)
        await _put_items(dynamodb, table, ["bad-0", "ok-1"])
        await run_until_idle(Worker(parse_config(config)))

        code, _, err = await redrive(capsys, path, "--mapping", uuid, "--dry-run")
        assert code == 2 and "--from" in err and queues[True][1] in err, err

        handler.fix()
        for raw in (False, True):
            code, out, _ = await redrive(
                capsys, path, "--mapping", uuid, "--from", queues[raw][1], "--json"
            )
            assert code == 0, out
            (record,) = json.loads(out)["records"]
            assert (record["fate"], record["retained"], record["removed"]) == (
                "redriven",
                2,
                True,
            ), record
            assert await _queue_bodies(sqs, queues[raw][0]) == []
        assert handler.texts()[-4:] == ["bad-0", "ok-1", "bad-0", "ok-1"]


async def test_kafka_records_redriven_from_a_kafka_topic_destination(
    kafka_bootstrap: str,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    """The redrive group commits the destination topic up to the first record it keeps (one
    whose offsets the topic never had); another mapping's record does not hold it back."""
    handler = FlakyHandler(tmp_path, f"kafka_{unique_name[-8:]}", monkeypatch, KAFKA_TEXTS)
    topic = await create_topic(kafka_bootstrap, unique_name, 1)
    dead_letters = await create_topic(kafka_bootstrap, f"{unique_name}-dlt", 1)
    await produce(kafka_bootstrap, topic, [(0, t.encode(), None) for t in KAFKA_SENT])
    mapping = kafka_mapping(
        kafka_bootstrap,
        topic,
        unique_name,
        FunctionName="redriven",
        BatchSize=1,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": f"kafka://{dead_letters}"}},
    )
    config = {
        "store": {"url": "memory://"},
        "worker": {"kafka_session_timeout_seconds": 2, "shutdown_grace_seconds": 5},
        "functions": [
            {"FunctionName": "redriven", "Handler": handler.reference, "Isolation": "thread"}
        ],
        "mappings": [mapping],
    }
    path = write_config(tmp_path / "config.toml", config)
    async with Worker(parse_config(config)):
        done = await wait_committed(kafka_bootstrap, unique_name, topic, {0: 4}, partitions=1)
    assert done == {0: 4}
    (first, _) = await read_all(kafka_bootstrap, dead_letters, 2)
    failure = json.loads(dict(first.headers)[FAILURE_HEADER])
    # Another mapping's record, then one whose offsets the source never had.
    other = {**failure, "requestContext": {**failure["requestContext"], "functionArn": "x"}}
    gone = json.loads(json.dumps(failure))
    gone["KafkaBatchInfo"]["recordsInfo"][f"{topic}-0"].update(
        firstRecordOffset="50", lastRecordOffset="50"
    )
    for document in (other, gone):
        header = (FAILURE_HEADER, json.dumps(document).encode())
        await produce(kafka_bootstrap, dead_letters, [(0, b"copy", None)], headers=[header])

    code, out, _ = await redrive(capsys, path, "--mapping", unique_name, "--dry-run", "--json")
    assert code == 1, out
    fates = [(r["first"], r["fate"]) for r in json.loads(out)["records"]]
    assert fates == [
        ("1", "would redrive"),
        ("3", "would redrive"),
        (None, "other mapping"),
        ("50", "not retained"),
    ], out
    group = f"poller-redrive-{unique_name}"
    assert await committed(kafka_bootstrap, group, dead_letters, 1) == {}

    handler.fix()
    seen = len(handler.texts())
    code, out, _ = await redrive(capsys, path, "--mapping", unique_name, "--json")
    assert code == 1, out
    fates = [(r["first"], r["fate"], r["removed"]) for r in json.loads(out)["records"]]
    assert fates == [
        ("1", "redriven", True),
        ("3", "redriven", True),
        (None, "other mapping", False),
        ("50", "not retained", False),
    ], out
    assert handler.texts()[seen:] == ["bad-1", "bad-3"]
    assert await committed(kafka_bootstrap, group, dead_letters, 1) == {0: 3}

    code, out, _ = await redrive(capsys, path, "--mapping", unique_name, "--json")
    assert [r["fate"] for r in json.loads(out)["records"]] == ["not retained"], out
    assert code == 1


KAFKA_SENT = ["ok-0", "bad-1", "ok-2", "bad-3"]
