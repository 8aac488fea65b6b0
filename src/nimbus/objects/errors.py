"""The errors of the S3 API: a code S3 clients know, an HTTP status, a message.

botocore raises ``ClientError`` with ``Error.Code`` read from the XML body
(``<Error><Code>NoSuchBucket</Code>...``), or from the status alone for HEAD
requests, which have no body (``404``, ``403``...). The codes and statuses are
S3's own; the messages say what to do.
"""

from __future__ import annotations

#: Every code Nimbus answers, with its HTTP status (as S3 answers it).
STATUS: dict[str, int] = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NotImplemented": 501,
    "NotModified": 304,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """An S3 error answer: ``code`` (a key of :data:`STATUS`), its status, a message."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        resource: str | None = None,
        headers: dict[str, str] | None = None,
        **details: str,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = STATUS[code]
        self.message = message
        self.resource = resource
        self.headers = headers or {}
        #: Extra elements of the ``<Error>`` body (``BucketName``, ``Key``...).
        self.details = details


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error(
        "NoSuchBucket",
        f"The specified bucket does not exist: {bucket!r}; create it first "
        "(CreateBucket, `aws s3 mb`)",
        BucketName=bucket,
    )


def no_such_key(bucket: str, key: str) -> S3Error:
    return S3Error("NoSuchKey", "The specified key does not exist.", Key=key, BucketName=bucket)


def access_denied(message: str = "Access Denied") -> S3Error:
    return S3Error("AccessDenied", message)
