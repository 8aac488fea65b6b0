"""S3's Signature V4 and aws-chunked bodies, checked against AWS's published example
("Signature calculations for the Authorization header: transferring payload in multiple
chunks", Amazon S3 API reference)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nimbus.compat import sigv4
from nimbus.objects.chunked import ChunkedDecoder, ChunkSigner
from nimbus.objects.errors import S3Error
from nimbus.objects.sigv4s3 import canonical_uri, verify

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)


def _example_request() -> sigv4.HttpRequest:
    auth = (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        f"x-amz-decoded-content-length;x-amz-storage-class,Signature={SEED}"
    )
    return sigv4.HttpRequest(
        "PUT",
        b"/examplebucket/chunkObject.txt",
        b"",
        (
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("authorization", auth),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
        ),
    )


def _example_body(signatures: tuple[str, ...] = CHUNK_SIGNATURES) -> bytes:
    return (
        f"10000;chunk-signature={signatures[0]}\r\n".encode()
        + b"a" * 65536
        + f"\r\n400;chunk-signature={signatures[1]}\r\n".encode()
        + b"a" * 1024
        + f"\r\n0;chunk-signature={signatures[2]}\r\n\r\n".encode()
    )


def test_seed_and_chunk_signatures_of_the_aws_example() -> None:
    request = _example_request()
    claim = sigv4.parse(request)
    sigv4.check_claims(claim, service="s3", now=datetime(2013, 5, 24, 0, 1, tzinfo=UTC))
    rule = verify(request, claim, SECRET)
    assert rule.chunked and rule.signer is not None and rule.sha256 is None
    body = _example_body()
    decoder = ChunkedDecoder(rule.signer)
    out = b"".join(decoder.feed(body[i : i + 777]) for i in range(0, len(body), 777))
    assert out == b"a" * 66560
    assert decoder.finish() == {}


def test_a_wrong_chunk_signature_or_a_changed_chunk_is_refused() -> None:
    request = _example_request()
    rule = verify(request, sigv4.parse(request), SECRET)
    bad = (CHUNK_SIGNATURES[0], "0" * 64, CHUNK_SIGNATURES[2])
    with pytest.raises(S3Error) as err:
        ChunkedDecoder(rule.signer).feed(_example_body(bad))
    assert err.value.code == "SignatureDoesNotMatch"
    changed = _example_body().replace(b"a" * 1024, b"b" + b"a" * 1023)
    with pytest.raises(S3Error) as err:
        ChunkedDecoder(rule.signer).feed(changed)
    assert err.value.code == "SignatureDoesNotMatch"
    truncated = ChunkedDecoder(rule.signer)
    truncated.feed(_example_body()[:60000])
    with pytest.raises(S3Error) as err:
        truncated.finish()
    assert err.value.code == "IncompleteBody"


def test_a_wrong_secret_is_signature_does_not_match() -> None:
    request = _example_request()
    with pytest.raises(S3Error) as err:
        verify(request, sigv4.parse(request), SECRET[:-1] + "X")
    assert err.value.code == "SignatureDoesNotMatch"


def test_signed_chunks_with_a_signed_trailer() -> None:
    """AWS's example of STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER (same data and key)."""
    key = sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3")
    signer = ChunkSigner(
        key,
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    )
    signatures = (
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    )
    trailer = (
        b"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:"
        b"d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n"
    )
    body = _example_body(signatures)[: -len(b"\r\n")] + trailer
    decoder = ChunkedDecoder(signer)
    assert decoder.feed(body) == b"a" * 66560
    assert decoder.finish() == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    forged = ChunkedDecoder(signer)
    with pytest.raises(S3Error) as err:
        forged.feed(body.replace(b"sOO8/Q==", b"AAAAAA=="))
    assert err.value.code == "SignatureDoesNotMatch"


def test_unsigned_trailer_bodies_give_their_checksum() -> None:
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    decoder = ChunkedDecoder(None)
    assert b"".join(decoder.feed(body[i : i + 3]) for i in range(0, len(body), 3)) == b"hello"
    assert decoder.finish() == {"x-amz-checksum-crc32": "NhCmhg=="}
    with pytest.raises(S3Error):
        ChunkedDecoder(None).feed(b"zz\r\n")


def test_s3_paths_are_encoded_once_and_not_normalised() -> None:
    assert canonical_uri(b"/s3/b/a%20b%2Bc.txt") == "/s3/b/a%20b%2Bc.txt"
    assert canonical_uri(b"/s3/b/dir//./x") == "/s3/b/dir//./x"
    assert canonical_uri(b"/s3/b/caf%C3%A9") == "/s3/b/caf%C3%A9"
