"""Config: regions. ARNs and ``[aws] region`` name regions AWS has (botocore's partitions data,
newer regions with a warning), and every ARN poller reaches through AWS is in ``[aws] region``."""

from __future__ import annotations

from typing import Any

import pytest

from poller.config import ConfigError, parse_config

ACCOUNT = "123456789012"
REGION = "us-east-1"


def stream(region: str = REGION, partition: str = "aws") -> str:
    return f"arn:{partition}:kinesis:{region}:{ACCOUNT}:stream/orders"


def mapping(arn: str, **fields: Any) -> dict[str, Any]:
    return {"EventSourceArn": arn, "StartingPosition": "LATEST", **fields}


def config(*mappings: dict[str, Any], **aws: Any) -> dict[str, Any]:
    return {"aws": {"region": REGION, **aws}, "mappings": list(mappings)}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


@pytest.fixture(autouse=True)
def _no_region_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


# --- regions AWS has --------------------------------------------------------------------------


def test_a_region_typo_in_an_arn_names_the_field_the_value_and_the_allowed_regions() -> None:
    (problem,) = problems(config(mapping(stream("us-eest-1"))))

    assert problem.startswith("mappings[0].EventSourceArn: region 'us-eest-1' is not an AWS region")
    assert "did you mean" in problem and "'us-east-1'" in problem
    assert "allowed in partition 'aws'" in problem
    assert "eu-west-1, eu-west-2, eu-west-3" in problem and "us-west-2" in problem


@pytest.mark.parametrize(
    ("region", "fragment"),
    [
        ("us-east-1a", "is not an AWS region"),  # an availability zone
        ("US-EAST-1", "did you mean 'us-east-1'"),
        ("useast1", "is not an AWS region"),
        ("mars-central-1", "is not an AWS region"),
    ],
)
def test_what_is_no_region_is_refused(region: str, fragment: str) -> None:
    (problem,) = problems(config(mapping(stream(region))))
    assert problem.startswith(f"mappings[0].EventSourceArn: region {region!r}")
    assert fragment in problem


def test_a_region_of_another_partition_and_an_unknown_partition_are_refused() -> None:
    (other,) = problems(config(mapping(stream("cn-north-1"))))
    assert "region 'cn-north-1' belongs to partition 'aws-cn', not 'aws'" in other

    (unknown,) = problems(config(mapping(stream(partition="aws-mars"))))
    assert "partition 'aws-mars' is not an AWS partition (allowed: aws, aws-cn" in unknown


def test_arns_of_other_partitions_are_accepted_in_their_region() -> None:
    data = config(mapping(stream("cn-north-1", partition="aws-cn")), region="cn-north-1")
    assert parse_config(data).mappings[0].event_source_arn == stream("cn-north-1", "aws-cn")


def test_a_newer_region_than_botocore_knows_is_accepted_with_a_warning() -> None:
    """AWS opens regions before an installed botocore learns them: a known geography with a new
    number passes, and says so."""
    parsed = parse_config(config(mapping(stream("ap-southeast-99")), region="ap-southeast-99"))

    assert len(parsed.warnings) == 2
    aws_warning, arn_warning = parsed.warnings
    assert aws_warning.startswith("aws.region: region 'ap-southeast-99' is not one botocore")
    assert arn_warning.startswith("mappings[0].EventSourceArn: region 'ap-southeast-99'")
    assert "ap-southeast-1" in arn_warning and "upgrade botocore" in arn_warning
    assert parse_config(config(mapping(stream()))).warnings == []


def test_a_destination_region_typo_is_refused_and_s3_needs_no_region() -> None:
    bad = {"OnFailure": {"Destination": f"arn:aws:sqs:us-esat-1:{ACCOUNT}:dlq"}}
    (problem,) = problems(config(mapping(stream(), DestinationConfig=bad)))
    assert problem.startswith(
        "mappings[0].DestinationConfig.OnFailure.Destination: region 'us-esat-1' is not an AWS"
    )

    s3 = {"OnFailure": {"Destination": "arn:aws:s3:::failures"}}
    assert parse_config(config(mapping(stream(), DestinationConfig=s3)))


def test_an_aws_region_typo_is_refused_whether_written_or_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (written,) = problems(config(mapping(stream()), region="eu-wset-1"))
    assert written.startswith("aws.region: region 'eu-wset-1' is not an AWS region")

    monkeypatch.setenv("AWS_REGION", "eu-wset-1")
    (from_env,) = problems({"mappings": [mapping(stream("eu-west-1"))]})
    assert from_env.startswith("aws.region: region 'eu-wset-1' is not an AWS region")
    assert from_env.endswith("(unset: taken from AWS_REGION)")


# --- one region per worker --------------------------------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        stream("eu-west-1"),
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs",
        f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders/stream/2024-01-01T00:00:00.000",
    ],
    ids=["kinesis", "sqs", "dynamodb"],
)
@pytest.mark.parametrize("endpoint", [None, "embedded", "http://127.0.0.1:5000"])
def test_a_source_in_another_region_than_aws_region_is_refused_naming_both(
    arn: str, endpoint: str | None
) -> None:
    """Lambda reads event sources in its own region only; poller's clients talk to [aws] region,
    on AWS, on the embedded endpoint and on emulators alike (moto keeps each region apart)."""
    fields = {"StartingPosition": "LATEST"} if "sqs" not in arn else {}
    aws = {"endpoint_url": endpoint} if endpoint else {}
    (problem,) = problems(config({"EventSourceArn": arn, **fields}, **aws))

    assert problem.startswith(
        "mappings[0].EventSourceArn: region 'eu-west-1' is not the [aws] region 'us-east-1' "
        "(allowed: 'us-east-1')"
    )
    assert "set [aws] region (--region with --esm) to 'eu-west-1'" in problem


def test_the_region_mismatch_says_where_an_unset_region_comes_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (problem,) = problems({"mappings": [mapping(stream("eu-west-1"))]})
    assert "[aws] region 'us-east-1' (unset: taken from AWS_DEFAULT_REGION)" in problem

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    (problem,) = problems({"mappings": [mapping(stream("eu-west-1"))]})
    assert "(unset: the default us-east-1)" in problem


def test_an_on_failure_destination_in_another_region_is_refused() -> None:
    destination = {"OnFailure": {"Destination": f"arn:aws:sns:us-west-2:{ACCOUNT}:failures"}}
    (problem,) = problems(config(mapping(stream(), DestinationConfig=destination)))

    assert problem.startswith(
        "mappings[0].DestinationConfig.OnFailure.Destination: region 'us-west-2' is not the "
        "[aws] region 'us-east-1'"
    )


def test_a_broker_arn_only_labels_events_when_its_endpoints_are_given() -> None:
    """An Amazon MQ or MSK ARN with SelfManagedEventSource endpoints is never looked up, so its
    region is free; without endpoints poller asks AWS (DescribeBroker) in [aws] region."""
    broker = f"arn:aws:mq:us-west-2:{ACCOUNT}:broker:shop:b-1234"
    endpoints = {"Endpoints": {"MQ_BROKER_URLS": ["amqp://127.0.0.1:5672"]}}
    labelled = {"EventSourceArn": broker, "SelfManagedEventSource": endpoints, "Queues": ["q"]}
    assert parse_config(config(labelled)).mappings[0].event_source_arn == broker

    (problem,) = problems(config({"EventSourceArn": broker, "Queues": ["q"]}))
    assert problem.startswith("mappings[0].EventSourceArn: region 'us-west-2' is not the [aws]")


def test_region_problems_are_reported_with_every_other_problem() -> None:
    found = problems(
        config(
            mapping(stream("eu-west-1"), BatchSize=0),
            mapping(stream("us-eest-1"), UUID="second", ParallelizationFactor=11),
            mapping(stream("eu-west-2"), UUID="third"),
        )
    )

    assert sorted(p.split(":")[0] for p in found) == [
        "mappings[0].BatchSize",
        "mappings[0].EventSourceArn",
        "mappings[1].EventSourceArn",
        "mappings[1].ParallelizationFactor",
        "mappings[2].EventSourceArn",
    ]
    assert "region 'eu-west-1' is not the [aws] region" in next(p for p in found if "[0].E" in p)
    assert "region 'us-eest-1' is not an AWS region" in next(p for p in found if "[1].E" in p)
    assert "region 'eu-west-2' is not the [aws] region" in next(p for p in found if "[2].E" in p)
