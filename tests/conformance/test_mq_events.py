"""MQ events in AWS's shapes: ``aws:rmq`` (RabbitMQ) and ``aws:mq`` (ActiveMQ).

The expected events are the examples AWS documents for Lambda's MQ event sources, rebuilt here
from their field values; the sources render them from what their client libraries deliver.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands
from pamqp.header import ContentHeader

from poller.config import ResolvedMapping, parse_config
from poller.sources.activemq.source import ActiveMqSource
from poller.sources.rabbitmq.source import RabbitMqSource

BROKER_ARN = "arn:aws:mq:us-west-2:111122223333:broker:pizzaBroker:b-9bcfa592"


def mapping(url: str, queue: str) -> ResolvedMapping:
    config = {
        "EventSourceArn": BROKER_ARN,
        "SelfManagedEventSource": {"Endpoints": {"MQ_BROKER_URLS": [url]}},
        "Queues": [queue],
    }
    return parse_config({"mappings": [config]}).mappings[0].resolved()


def rabbit_delivery(body: bytes, properties: commands.Basic.Properties) -> DeliveredMessage:
    header = ContentHeader(body_size=len(body), properties=properties)
    deliver = commands.Basic.Deliver(
        consumer_tag="c", delivery_tag=1, redelivered=False, exchange="", routing_key="pizzaQueue"
    )
    return DeliveredMessage(delivery=deliver, header=header, body=body, channel=None)  # type: ignore[arg-type]


def test_rabbitmq_event_matches_the_aws_example() -> None:
    source = RabbitMqSource(mapping("amqp://127.0.0.1:5672", "pizzaQueue"))
    body = b'{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}'
    properties = commands.Basic.Properties(
        content_type="text/plain",
        headers={"header1": "value1", "header2": "value2", "numberInHeader": 10},
        delivery_mode=1,
        priority=34,
        expiration="60000",
        timestamp=datetime.fromtimestamp(2021, UTC),
        user_id="AIDACKCEVSQ6C2EXAMPLE",
    )
    record = source._record(rabbit_delivery(body, properties), 1, 1)
    event = source.codec.render_event([record])
    assert event == {
        "eventSource": "aws:rmq",
        "eventSourceArn": BROKER_ARN,
        "rmqMessagesByQueue": {
            "pizzaQueue::/": [
                {
                    "basicProperties": {
                        "contentType": "text/plain",
                        "contentEncoding": None,
                        "headers": {
                            "header1": {"bytes": list(b"value1")},
                            "header2": {"bytes": list(b"value2")},
                            "numberInHeader": 10,
                        },
                        "deliveryMode": 1,
                        "priority": 34,
                        "correlationId": None,
                        "replyTo": None,
                        "expiration": "60000",
                        "messageId": None,
                        "timestamp": "Jan 1, 1970, 12:33:41 AM",
                        "type": None,
                        "userId": "AIDACKCEVSQ6C2EXAMPLE",
                        "appId": None,
                        "clusterId": None,
                        "bodySize": len(body),
                    },
                    "redelivered": False,
                    "data": base64.b64encode(body).decode(),
                }
            ]
        },
    }
    # No message id: a digest of the content stands in, stable across redeliveries.
    again = source._record(rabbit_delivery(body, properties), 2, 1)
    assert record.position == again.position and record.position.startswith("sha256:")
    # The size estimate covers what the message adds to the event.
    assert record.size >= len(json.dumps(event["rmqMessagesByQueue"]["pizzaQueue::/"][0]))


def test_rabbitmq_uses_the_message_id_and_the_vhost_names_the_queue_key() -> None:
    source = RabbitMqSource(mapping("amqp://127.0.0.1:5672/orders-vhost", "pizzaQueue"))
    source.vhost = "orders-vhost"
    properties = commands.Basic.Properties(message_id="m-1")
    record = source._record(rabbit_delivery(b"x", properties), 1, 1)
    assert record.position == "m-1"
    assert list(source.codec.render_event([record])["rmqMessagesByQueue"]) == [
        "pizzaQueue::orders-vhost"
    ]
    key, info = source.codec.batch_info([record])
    assert key == "RabbitMQBatchInfo"
    assert info["batchSize"] == 1 and info["firstMessageId"] == "m-1"
    assert info["messages"][0]["data"] == "eA=="


def activemq_frame(body: bytes, headers: dict[str, str]) -> Any:
    return SimpleNamespace(headers=headers, body=body, _received_at_reconnection_count=0)


def test_activemq_event_matches_the_aws_example() -> None:
    source = ActiveMqSource(mapping("stomp+ssl://127.0.0.1:61614", "testQueue"))
    message_id = "ID:b-9bcfa592-1.mq.us-west-2.amazonaws.com-37557-1234520418293-4:1:1:1:1"
    frame = activemq_frame(
        b"ABC",
        {
            "message-id": message_id,
            "destination": "/queue/testQueue",
            "subscription": "s-1",
            "ack": "a-1",
            "expires": "60000",
            "priority": "1",
            "correlation-id": "myJMSCoID",
            "timestamp": "1598827811958",
            "index": "1",
            "doAlarm": "false",
            "myCustomProperty": "value",
        },
    )
    record = source._record(frame, "s-1")
    message = source.codec.render_event([record])["messages"][0]
    received = message.pop("brokerOutTime")
    assert isinstance(received, int) and received >= 1598827811958
    assert message == {
        "messageID": message_id,
        "messageType": "jms/text-message",
        "deliveryMode": 1,
        "replyTo": None,
        "type": None,
        "expiration": "60000",
        "priority": 1,
        "correlationId": "myJMSCoID",
        "redelivered": False,
        "destination": {"physicalName": "testQueue"},
        "data": "QUJD",
        "timestamp": 1598827811958,
        "brokerInTime": 1598827811958,
        "properties": {"index": "1", "doAlarm": "false", "myCustomProperty": "value"},
    }
    assert source.codec.render_event([record])["eventSource"] == "aws:mq"
    assert source.codec.render_event([record])["eventSourceArn"] == BROKER_ARN
    assert record.arrival == pytest.approx(1598827811.958)


def test_activemq_bytes_messages_persistence_and_redelivery_are_rendered() -> None:
    source = ActiveMqSource(mapping("stomp://127.0.0.1:61613", "q"))
    frame = activemq_frame(
        b"\x00\x01",
        {
            "message-id": "ID:1",
            "content-length": "2",
            "persistent": "true",
            "redelivered": "true",
            "subscription": "s",
            "ack": "a",
        },
    )
    record = source._record(frame, "s")
    message = source.codec.render_event([record])["messages"][0]
    assert message["messageType"] == "jms/bytes-message"
    assert message["deliveryMode"] == 2
    assert message["redelivered"] is True
    assert "properties" not in message
    assert base64.b64decode(message["data"]) == b"\x00\x01"
    key, info = source.codec.batch_info([record])
    assert key == "ActiveMQBatchInfo" and info["queue"] == "q" and info["batchSize"] == 1
