"""The ActiveMQ source's STOMP frame reader reads every byte stream exactly as stompman's own
parser does, however the stream is cut into chunks; its ACK/NACK frames are stompman's bytes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from stompman.frames import AckFrame, NackFrame
from stompman.serde import FrameParser, dump_frame

from poller.sources.activemq.frames import FrameReader, settle_frames

COMMANDS = [b"MESSAGE", b"RECEIPT", b"ERROR", b"CONNECTED", b"SEND", b"NOPE", b""]
#: Header text with what STOMP escapes, what stompman refuses and what is not UTF-8.
header_text = st.one_of(
    st.sampled_from(
        [
            b"message-id",
            b"ID\\chost-1\\c1\\c1",
            b"a\\nb",
            b"back\\\\slash",
            b"bad\\x",
            b"two:colons",
            b"\xff\xfe",
            b"",
            b"subscription",
            b"content-length",
            b"Content-Length",
            b"ack",
            b"trailing\\",
        ]
    ),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\0" not in b),
    st.lists(
        st.sampled_from([b"\\", b"c", b"n", b"\\c", b"\\\\", b"a", b"\r", b"\xc3", b"\xa9"]),
        max_size=8,
    ).map(b"".join),
)


@st.composite
def frames(draw: Any) -> bytes:
    """One frame as a broker (or a broken one) might send it."""
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    command = draw(st.sampled_from(COMMANDS))
    body = draw(st.binary(max_size=40))
    lines = [command]
    for _ in range(draw(st.integers(0, 5))):
        lines.append(draw(header_text) + b":" + draw(header_text))
    if draw(st.booleans()):
        declared = draw(st.sampled_from([len(body), len(body), max(0, len(body) - 3), 0]))
        lines.append(b"content-length:" + str(declared).encode())
    elif b"\0" in body:
        body = body.replace(b"\0", b"")
    if draw(st.booleans()):
        lines.append(b"content-length:" + draw(st.sampled_from([b"x", b"7", b" 3"])))
    frame = newline.join(lines) + newline + newline + body + b"\0"
    heartbeats = draw(st.sampled_from([b"", b"\n", b"\n\n", b"\r\n"]))
    return heartbeats + frame


def _described(frame: Any) -> tuple[Any, ...]:
    return (type(frame).__name__, getattr(frame, "headers", None), getattr(frame, "body", None))


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(stream)]:
        pieces.append(stream[last:point])
        last = point
    return [piece for piece in pieces if piece]


@settings(max_examples=400, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=6), st.lists(st.integers(0, 10_000), max_size=8))
def test_reader_reads_what_stompman_reads(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    expected = [_described(f) for f in FrameParser().parse_frames_from_chunk(stream)]

    reader = FrameReader()
    got = [
        _described(frame)
        for chunk in _cut(stream, cuts)
        for frame in reader.parse_frames_from_chunk(chunk)
    ]

    assert got == expected


def test_a_frame_split_inside_its_body_waits_for_the_rest() -> None:
    stream = b"MESSAGE\nmessage-id:ID\\c1\ncontent-length:5\n\nab\0de\0\n"
    reader = FrameReader()
    assert list(reader.parse_frames_from_chunk(stream[:20])) == []
    assert list(reader.parse_frames_from_chunk(stream[20:27])) == []
    frame, heartbeat = reader.parse_frames_from_chunk(stream[27:])
    assert frame.headers == {"message-id": "ID:1", "content-length": "5"}
    assert frame.body == b"ab\0de"
    assert type(heartbeat).__name__ == "HeartbeatFrame"


@given(
    st.lists(st.tuples(st.text(max_size=20), st.text(max_size=8)), min_size=1, max_size=5),
    st.sampled_from(["ACK", "NACK"]),
)
def test_settle_frames_are_the_bytes_stompman_writes(
    ids: list[tuple[str, str]], command: str
) -> None:
    frame_type = AckFrame if command == "ACK" else NackFrame
    expected = b"".join(
        dump_frame(frame_type(headers={"id": ack, "subscription": sub})) for ack, sub in ids
    )
    assert settle_frames(command, [a for a, _ in ids], [s for _, s in ids]) == expected
