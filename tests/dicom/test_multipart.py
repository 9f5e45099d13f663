"""multipart/related reading and writing (RFC 2046, RFC 2387, PS3.18 8.6.1.2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from biobank.dicom.multipart import (
    MultipartReader,
    Part,
    PayloadTooLarge,
    encode_multipart,
    multipart_content_type,
    new_boundary,
    parse_content_type,
)
from biobank.errors import InvalidInput

BOUNDARY = "b0undary-XYZ"
CT = {"Content-Type": "application/dicom"}


def read_all(
    body: bytes, boundary: str = BOUNDARY, chunk: int = 0, limit: int = 1 << 30
) -> list[Part]:
    reader = MultipartReader(boundary, max_part_bytes=limit)
    parts: list[Part] = []
    step = chunk or max(1, len(body))
    for start in range(0, len(body), step):
        parts += reader.feed(body[start : start + step])
    parts += reader.close()
    assert reader.done
    return parts


def encode(parts: list[tuple[bytes, dict[str, str]]], boundary: str = BOUNDARY) -> bytes:
    return b"".join(encode_multipart(parts, boundary))


# -- parse_content_type -------------------------------------------------------------------


def test_parse_content_type_reads_dicomweb_header() -> None:
    media, params = parse_content_type(
        'Multipart/Related; Type="application/dicom";boundary=abc-123 ; '
        "transfer-syntax=1.2.840.10008.1.2.1"
    )
    assert media == "multipart/related"
    assert params == {
        "type": "application/dicom",
        "boundary": "abc-123",
        "transfer-syntax": "1.2.840.10008.1.2.1",
    }


def test_parse_content_type_unquotes_and_keeps_case_of_values() -> None:
    media, params = parse_content_type(r'multipart/related; boundary="a;b \"c\" D"; x = y;;')
    assert media == "multipart/related"
    assert params == {"boundary": 'a;b "c" D', "x": "y"}


def test_parse_content_type_without_parameters() -> None:
    assert parse_content_type(" application/DICOM ") == ("application/dicom", {})


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("", "not a media type"),
        ("multipart", "not a media type"),
        ("multi part/related", "not a media type"),
        ("multipart/related; boundary", "parameter 1"),
        ('multipart/related; type="a/b"; boundary="abc', "unterminated"),
        ("multipart/related; boundary=a b", "parameter 1"),
    ],
)
def test_parse_content_type_errors_say_what_to_fix(header: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words) as info:
        parse_content_type(header)
    assert "Content-Type" in str(info.value)


# -- round trips ---------------------------------------------------------------------------

PARTS: list[tuple[bytes, dict[str, str]]] = [
    (b"DICM" + bytes(range(256)) * 40, {**CT, "Content-Location": "/studies/1"}),
    (b"", CT),  # a part of size 0
    (b"a --" + BOUNDARY.encode() + b"\r\n not at line start\r\n", CT),
    (b"\r\n\r\n\n\r", {}),  # line breaks only, and no headers at all
    (b"x" * 5000, {"Content-Type": "application/octet-stream; transfer-syntax=*"}),
]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 0])
def test_round_trip_at_any_chunk_size(chunk: int) -> None:
    parts = read_all(encode(PARTS), chunk=chunk)
    assert [p.body for p in parts] == [body for body, _ in PARTS]
    assert parts[0].headers == {
        "content-type": "application/dicom",
        "content-location": "/studies/1",
    }
    assert parts[0].content_type == "application/dicom"
    assert parts[3].headers == {}
    assert parts[3].content_type == ""
    assert parts[4].media_type == "application/octet-stream"


def test_a_longer_word_starting_with_the_boundary_is_body_content() -> None:
    b = BOUNDARY.encode()
    inner = b"line\r\n--" + b + b"Xyz\r\nmore\r\n--" + b + b" x"
    body = b"--" + b + b"\r\n\r\n" + inner + b"\r\n--" + b + b"--\r\n"
    for chunk in (1, 7, 0):
        assert [p.body for p in read_all(body, chunk=chunk)] == [inner]


def test_boundary_split_at_every_position() -> None:
    body = encode([(b"abc", CT), (b"defg", CT)])
    for cut in range(1, len(body)):
        reader = MultipartReader(BOUNDARY, max_part_bytes=100)
        parts = reader.feed(body[:cut]) + reader.feed(body[cut:]) + reader.close()
        assert [p.body for p in parts] == [b"abc", b"defg"], cut


def test_feed_returns_parts_as_soon_as_they_end() -> None:
    body = encode([(b"first", CT), (b"second", CT)])
    reader = MultipartReader(BOUNDARY, max_part_bytes=100)
    end_of_first = body.index(b"\r\n--" + BOUNDARY.encode(), 10) + 2 + 2 + len(BOUNDARY) + 2
    assert [p.body for p in reader.feed(body[:end_of_first])] == [b"first"]
    assert [p.body for p in reader.feed(body[end_of_first:])] == [b"second"]
    assert reader.close() == []


def test_preamble_and_epilogue_are_ignored() -> None:
    body = b"This is a preamble.\r\n--" + BOUNDARY.encode() + b"\r\n"
    body += b"Content-Type: text/plain\r\n\r\nhello\r\n--" + BOUNDARY.encode() + b"--\r\n"
    body += b"epilogue\r\n--" + BOUNDARY.encode() + b"\r\n\r\nnot a part"
    for chunk in (1, 5, 0):
        assert [p.body for p in read_all(body, chunk=chunk)] == [b"hello"]


def test_lf_only_line_breaks_and_transport_padding() -> None:
    b = BOUNDARY.encode()
    body = (
        b"--" + b + b"  \t\nContent-Type: a/b\n\nbody one\n--" + b + b"\n\nbody two\n--" + b + b"--"
    )
    for chunk in (1, 3, 0):
        parts = read_all(body, chunk=chunk)
        assert [(p.content_type, p.body) for p in parts] == [
            ("a/b", b"body one"),
            ("", b"body two"),
        ]


def test_folded_and_repeated_headers() -> None:
    b = BOUNDARY.encode()
    body = b"--" + b + b"\r\nX-A: one\r\n  two\r\nX-B: 1\r\nx-b: 2\r\n\r\nz\r\n--" + b + b"--"
    (part,) = read_all(body)
    assert part.headers == {"x-a": "one two", "x-b": "1, 2"}


def test_empty_multipart_has_no_parts() -> None:
    assert read_all(b"--" + BOUNDARY.encode() + b"--\r\n") == []


@settings(max_examples=60, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), max_size=5),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_round_trip_property(bodies: list[bytes], chunk: int) -> None:
    boundary = "q"  # short, so that random bodies often contain pieces of it
    safe = [b for b in bodies if b"\r\n--q" not in b and not b.startswith(b"--q")]
    parts = read_all(encode([(b, CT) for b in safe], boundary), boundary, chunk=chunk)
    assert [p.body for p in parts] == safe


# -- errors --------------------------------------------------------------------------------


def test_truncated_body_is_reported_at_close() -> None:
    body = encode([(b"abc" * 100, CT)])
    reader = MultipartReader(BOUNDARY, max_part_bytes=1000)
    reader.feed(body[:150])
    with pytest.raises(InvalidInput) as info:
        reader.close()
    message = str(info.value)
    assert f"closing boundary --{BOUNDARY}--" in message
    assert "interrupted" in message
    assert "resend" in message


def test_missing_final_delimiter_after_complete_part() -> None:
    body = encode([(b"abc", CT)]).replace(b"--" + BOUNDARY.encode() + b"--\r\n", b"")
    reader = MultipartReader(BOUNDARY, max_part_bytes=1000)
    reader.feed(body)
    with pytest.raises(InvalidInput, match="ended before its closing boundary"):
        reader.close()


def test_body_without_boundary_says_to_check_the_header() -> None:
    reader = MultipartReader("other", max_part_bytes=1000)
    reader.feed(encode([(b"abc", CT)]))
    with pytest.raises(InvalidInput, match="no boundary --other.*boundary parameter"):
        reader.close()


def test_oversize_part_names_its_index_before_the_body_ends() -> None:
    reader = MultipartReader(BOUNDARY, max_part_bytes=1000)
    body = encode([(b"a" * 10, CT), (b"b" * 5000, CT)])
    with pytest.raises(PayloadTooLarge, match="part 2 .* limit of 1000 bytes"):
        for start in range(0, 2000, 100):  # well before the end of part 2
            reader.feed(body[start : start + 100])
    assert issubclass(PayloadTooLarge, InvalidInput)


def test_part_of_exactly_the_limit_is_accepted() -> None:
    assert read_all(encode([(b"x" * 1000, CT)]), chunk=7, limit=1000)[0].body == b"x" * 1000
    with pytest.raises(PayloadTooLarge, match="part 1"):
        read_all(encode([(b"x" * 1001, CT)]), limit=1000)


def test_endless_header_block_is_refused() -> None:
    reader = MultipartReader(BOUNDARY, max_part_bytes=10)
    reader.feed(b"--" + BOUNDARY.encode() + b"\r\nX-A: " + b"a" * 60000)
    with pytest.raises(InvalidInput, match="part 1 .* header block"):
        reader.feed(b"a" * 10000)


def test_malformed_header_line_is_refused() -> None:
    body = (
        b"--" + BOUNDARY.encode() + b"\r\nno colon here\r\n\r\nx\r\n--" + BOUNDARY.encode() + b"--"
    )
    with pytest.raises(InvalidInput, match="part 1 .* header line"):
        read_all(body)


@pytest.mark.parametrize("boundary", ["", "a" * 201, "tab\there", "trailing "])
def test_bad_boundary_is_refused(boundary: str) -> None:
    with pytest.raises(InvalidInput, match="boundary"):
        MultipartReader(boundary, max_part_bytes=10)


def test_small_feeds_with_near_misses_everywhere() -> None:
    # 16 000 feeds of a body full of near-delimiters: a quadratic re-scan would take minutes
    # (the suite's timeout notices); the result must be exact.
    size = 8 << 20
    body = encode([(b"\r\n-" * (size // 3), CT)])  # near-misses everywhere
    reader = MultipartReader(BOUNDARY, max_part_bytes=size)
    parts = []
    for start in range(0, len(body), 512):
        parts += reader.feed(body[start : start + 512])
    reader.close()
    assert len(parts) == 1 and parts[0].body == b"\r\n-" * (size // 3)


# -- writing -------------------------------------------------------------------------------


def test_encoding_is_lazy_and_exact() -> None:
    def parts() -> Iterator[tuple[bytes, dict[str, str]]]:
        yield b"one", CT
        raise AssertionError("the second part must not be pulled before the first is sent")

    chunks = encode_multipart(parts(), "B")
    assert next(chunks) == b"--B\r\nContent-Type: application/dicom\r\n\r\n"
    assert next(chunks) == b"one"
    assert encode([(b"one", CT), (b"", {})], "B") == (
        b"--B\r\nContent-Type: application/dicom\r\n\r\none\r\n--B\r\n\r\n\r\n--B--\r\n"
    )
    assert encode([], "B") == b"--B--\r\n"


@pytest.mark.parametrize(
    "parts",
    [
        [(b"abc\r\n--B\r\nx", CT)],
        [(b"--B\r\nx", CT)],
    ],
)
def test_encoding_refuses_a_body_containing_the_boundary(
    parts: list[tuple[bytes, dict[str, str]]],
) -> None:
    with pytest.raises(InvalidInput, match="part 1 contains the multipart boundary"):
        encode(parts, "B")


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "a/b\r\nX-Injected: 1"}, {"Bad Name": "x"}, {"X-Name": "caf\u00e9\u2603"}],
)
def test_encoding_refuses_unsafe_headers(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidInput, match="part 1"):
        encode([(b"x", headers)], "B")


@pytest.mark.parametrize("boundary", ["", "a" * 71, "ends with space ", "semi;colon", "caf\u00e9"])
def test_encoding_refuses_a_boundary_rfc_2046_does_not_allow(boundary: str) -> None:
    with pytest.raises(InvalidInput, match="RFC 2046"):
        encode([(b"x", CT)], boundary)


def test_new_boundary_is_a_unique_token() -> None:
    first, second = new_boundary(), new_boundary()
    assert first != second
    assert len(first) <= 70
    media, params = parse_content_type(multipart_content_type("application/dicom", first))
    assert params["boundary"] == first


def test_multipart_content_type() -> None:
    assert multipart_content_type("application/dicom", "abc") == (
        'multipart/related; type="application/dicom"; boundary=abc'
    )
    value = multipart_content_type("application/octet-stream", "a b:c", "1.2.840.10008.1.2.1")
    assert value == (
        'multipart/related; type="application/octet-stream"; '
        'transfer-syntax=1.2.840.10008.1.2.1; boundary="a b:c"'
    )
    assert parse_content_type(value)[1] == {
        "type": "application/octet-stream",
        "transfer-syntax": "1.2.840.10008.1.2.1",
        "boundary": "a b:c",
    }


# -- interoperability with dicomweb-client -------------------------------------------------


def test_reads_a_body_encoded_by_dicomweb_client() -> None:
    from dicomweb_client.api import DICOMwebClient

    content_type = 'multipart/related; type="application/dicom"; boundary="0f3cf5c0-70e0"'
    bodies = [b"DICM first", b"", b"second\r\n--0f3cf5c0-70e0X"]
    body = DICOMwebClient._encode_multipart_message(bodies, content_type)
    media, params = parse_content_type(content_type)
    assert media == "multipart/related"
    for chunk in (1, 7, 0):
        parts = read_all(body, params["boundary"], chunk=chunk)
        assert [p.body for p in parts] == bodies
        assert {p.content_type for p in parts} == {"application/dicom"}


def test_dicomweb_client_reads_our_encoding() -> None:
    from dicomweb_client.api import DICOMwebClient

    boundary = new_boundary()
    bodies = [b"DICM one" * 100, b"two", b"three\r\n"]
    response = requests.Response()
    response.status_code = 200
    response.headers["content-type"] = multipart_content_type("application/dicom", boundary)
    response._content = encode([(b, CT) for b in bodies], boundary)
    client = DICOMwebClient("http://localhost:1")  # no request is made
    assert list(client._decode_multipart_message(response, stream=False)) == bodies
