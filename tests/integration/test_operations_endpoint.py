"""The operators' endpoint of a real ``poller run`` process: ``/metrics`` counts exactly what a
scenario implies, ``/healthz``, ``/readyz`` and ``/status`` answer as documented.

Each test writes its own config with ``[http] listen = "127.0.0.1:0"`` and reads the port the
worker logged, then scrapes with aiohttp and parses the exposition with prometheus-client's
parser, as Prometheus would read it.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from anyio.abc import Process
from prometheus_client.parser import text_string_to_metric_families

from poller.observability.catalog import METRIC_NAMES
from tests.conformance.kinesis_helpers import AwsSetup, aws_setup
from tests.kit import REGION, wait_until

pytestmark = pytest.mark.integration

HANDLER = textwrap.dedent(
    """
    import json

    def poisoned(event, context):
        # Kinesis: a batch holding the record "poison" fails as a whole.
        import base64
        for record in event["Records"]:
            if base64.b64decode(record["kinesis"]["data"]) == b"poison":
                raise ValueError("poison")

    _seen = set()

    def fail_once(event, context):
        # SQS with ReportBatchItemFailures: "again" messages fail the first time they come.
        failures = []
        for record in event["Records"]:
            if record["body"].startswith("again") and record["messageId"] not in _seen:
                _seen.add(record["messageId"])
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}
    """
)


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[AwsSetup]:
    async with aws_setup(moto_endpoint) as setup:
        yield setup


class Running:
    """A ``poller run`` child and its operators' endpoint."""

    def __init__(self, process: Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.port: int | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def listening(self) -> bool:
        for line in self.output().splitlines():
            if '"operators\' endpoint listening"' in line:
                self.port = int(json.loads(line)["port"])
        return self.port is not None

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}{path}") as response,
        ):
            return response.status, await response.text()

    async def metrics(self) -> dict[str, float]:
        """Every sample, keyed ``name{label=value,...}`` (labels sorted, mapping left out)."""
        _, text = await self.get("/metrics")
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(
                    f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "mapping"
                )
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    async def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await self.process.wait() == 0, self.output()[-3000:]


async def start(root: Path, config: str) -> Running:
    (root / "config.toml").write_text(config)
    (root / "handlers.py").write_text(HANDLER)
    log = root / "poller.log"
    with log.open("wb") as out:
        process = await anyio.open_process(
            [sys.executable, "-m", "poller.cli", "run", "config.toml"],
            cwd=root,
            stdout=out,
            stderr=out,
        )
    running = Running(process, log)
    await wait_until(running.listening, within=20, what="the endpoint's port in the log")
    return running


def config(aws: AwsSetup, mapping: str, *, store: str = "sqlite:///state.db") -> str:
    return textwrap.dedent(
        f"""
        [aws]
        region = "{REGION}"
        endpoint_url = "{aws.endpoint}"
        access_key_id = "testing"
        secret_access_key = "testing"
        [store]
        url = "{store}"
        [worker]
        idle_poll_seconds = 0.05
        [http]
        listen = "127.0.0.1:0"
        [logging]
        format = "json"
        """
    ) + textwrap.dedent(mapping)


async def wait_for(running: Running, name: str, at_least: float) -> None:
    """Until the (one) sample of ``name`` reaches ``at_least`` (missing counts as 0)."""

    async def value() -> float:
        samples = await running.metrics()
        found = [v for key, v in samples.items() if key.split("{")[0] == name]
        return found[0] if found else 0.0

    with anyio.fail_after(30):
        while await value() < at_least:
            await anyio.sleep(0.05)


def one(samples: dict[str, float], name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    wanted = [f"{k}={v}" for k, v in labels.items()]
    found = [
        v
        for key, v in samples.items()
        if key.split("{")[0] == name and all(w in key for w in wanted)
    ]
    assert len(found) == 1, f"{name} {labels}: {found} in {sorted(samples)}"
    return found[0]


async def test_a_stream_mapping_counts_a_discarded_batch_and_a_good_one_exactly(
    aws: AwsSetup, tmp_path: Path, unique_name: str
) -> None:
    arn = await aws.create_stream(unique_name, shards=1)
    destination = await aws.create_queue(unique_name)
    # Ten records (one poisoned) then five good ones, all written before the worker starts: the
    # first batch is the ten (BatchSize), the second the five, whatever the reads return.
    await aws.put_records(arn, [b"a", b"b", b"poison", *[b"c"] * 7, *[b"d"] * 5])
    running = await start(
        tmp_path,
        config(
            aws,
            f"""
            [[functions]]
            FunctionName = "poisoned"
            Handler = "handlers.poisoned"
            [[mappings]]
            UUID = "00000000-0000-0000-0000-00000000aaaa"
            EventSourceArn = "{arn}"
            FunctionName = "poisoned"
            StartingPosition = "TRIM_HORIZON"
            BatchSize = 10
            MaximumRetryAttempts = 1
            DestinationConfig = {{ OnFailure = {{ Destination = "{destination.arn}" }} }}
            """,
        ),
    )
    assert (await running.get("/healthz"))[0] == 200

    async def ready() -> bool:
        return (await running.get("/readyz"))[0] == 200

    with anyio.fail_after(20):
        while not await ready():
            await anyio.sleep(0.05)
    status, body = await running.get("/readyz")
    assert json.loads(body)["functions"] == {"poisoned": "ready"}

    await wait_for(running, "poller_on_failure_destination_delivered_events_total", 10)
    await wait_for(running, "poller_invoked_events_total", 25)

    samples = await running.metrics()
    labels = {"function": "poisoned", "source": "kinesis"}
    expected = {
        "poller_polled_events_total": 15,
        "poller_invocations_total": 3,  # the first batch twice (one retry), then the good one
        "poller_errors_total": 2,
        "poller_invoked_events_total": 25,
        "poller_failed_invoke_events_total": 20,
        "poller_on_failure_destination_delivered_events_total": 10,
        "poller_dropped_events_total": 0,
        "poller_destination_delivery_failures_total": 0,
        "poller_filtered_out_events_total": 0,
        "poller_throttles_total": 0,
        "poller_duration_seconds_count": 3,
        "poller_concurrent_executions": 0,
    }
    for name, value in expected.items():
        assert one(samples, name, **labels) == value, name
    assert one(samples, "poller_partitions_owned") == 1
    assert one(samples, "poller_partitions_blocked") == 0
    assert one(samples, "poller_iterator_age_milliseconds", **labels) >= 0
    assert one(samples, "poller_duration_seconds_bucket", le="+Inf", **labels) == 3
    # Every family of the catalog is in the exposition; nothing else named poller_ is.
    families = {key.split("{")[0] for key in samples}
    for name in METRIC_NAMES - {"poller_offset_lag"}:  # Kafka mappings only
        assert any(f.startswith(name) for f in families), name
    status, body = await running.get("/status")
    assert status == 200
    mapping = json.loads(body)["00000000-0000-0000-0000-00000000aaaa"]
    assert mapping["metrics"]["InvokedEventCount"] == 25
    await running.stop()


async def test_a_queue_mapping_counts_a_partial_response_exactly(
    aws: AwsSetup, tmp_path: Path, unique_name: str
) -> None:
    queue = await aws.sqs.create_queue(unique_name, visibility_timeout=1)
    await aws.sqs.send(queue, "ok-1", "again-1", "ok-2", "again-2", "ok-3", "ok-4")
    running = await start(
        tmp_path,
        config(
            aws,
            f"""
            [[functions]]
            FunctionName = "fail-once"
            Handler = "handlers.fail_once"
            Isolation = "thread"
            [[mappings]]
            EventSourceArn = "{queue.arn}"
            FunctionName = "fail-once"
            BatchSize = 10
            FunctionResponseTypes = ["ReportBatchItemFailures"]
            """,
        ),
    )
    await wait_for(running, "poller_deleted_events_total", 6)
    samples = await running.metrics()
    labels = {"function": "fail-once", "source": "sqs"}
    assert one(samples, "poller_polled_events_total", **labels) == 8  # 6, then 2 again
    assert one(samples, "poller_invoked_events_total", **labels) == 8
    assert one(samples, "poller_failed_invoke_events_total", **labels) == 2
    assert one(samples, "poller_errors_total", **labels) == 0  # a partial response is no error
    assert one(samples, "poller_deleted_events_total", **labels) == 6
    # Queue mappings own no partitions: the per-worker gauges leave them out.
    assert not [key for key in samples if key.startswith("poller_partitions_owned")]
    await running.stop()


async def test_readiness_waits_for_a_source_that_does_not_answer(
    aws: AwsSetup, tmp_path: Path, unique_name: str
) -> None:
    missing = f"arn:aws:kinesis:{REGION}:123456789012:stream/{unique_name}-missing"
    running = await start(
        tmp_path,
        config(
            aws,
            f"""
            [[mappings]]
            EventSourceArn = "{missing}"
            Handler = "handlers:poisoned"
            StartingPosition = "LATEST"
            """,
        ),
    )
    answer: dict[str, Any] = {}
    with anyio.fail_after(20):  # starting, then started with a mapping that waits for its source
        while "its source has not answered" not in answer.get("reason", ""):
            status, body = await running.get("/readyz")
            answer = json.loads(body)
            assert status == 503, answer
            await anyio.sleep(0.05)
    assert answer["phase"] == "running" and answer["store"] == "ok", answer
    assert (await running.get("/healthz"))[0] == 200  # live: it keeps trying
    await running.stop()
