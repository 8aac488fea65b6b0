"""Thumbnails: each image uploaded to bucket ``photos`` gets smaller copies in ``thumbnails``.

Triggered by an ``object`` trigger on ``photos`` (S3 event notifications, as from S3).
For every record it reads the image with boto3, makes a thumbnail per size with Pillow
(fitting in SIZE x SIZE, aspect kept, never enlarged) and writes it to
``thumbnails/<size>/<key>``. No credentials in the code: inside Nimbus, boto3 reaches
the function's own namespace's buckets through the platform (AWS_ENDPOINT_URL_S3).

Settings (environment): THUMBNAIL_BUCKET (default ``thumbnails``), THUMBNAIL_SIZES
(default ``64,256,1024``).
"""

import io
import os
import urllib.parse

import boto3
from PIL import Image, ImageOps

TARGET = os.environ.get("THUMBNAIL_BUCKET", "thumbnails")
SIZES = tuple(int(s) for s in os.environ.get("THUMBNAIL_SIZES", "64,256,1024").split(","))
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}

s3 = boto3.client("s3")


def handler(event, context):
    made = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with Image.open(io.BytesIO(body)) as original:
            fmt = original.format if original.format in FORMATS else "PNG"
            image = ImageOps.exif_transpose(original)  # photos taken sideways stand up
            for size in SIZES:
                thumb = image.copy()
                thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
                if fmt == "JPEG" and thumb.mode not in ("RGB", "L"):
                    thumb = thumb.convert("RGB")
                out = io.BytesIO()
                thumb.save(out, fmt, **({"quality": 85, "optimize": True} if fmt == "JPEG" else {}))
                target_key = f"{size}/{key}"
                s3.put_object(
                    Bucket=TARGET,
                    Key=target_key,
                    Body=out.getvalue(),
                    ContentType=FORMATS[fmt],
                    Metadata={"source": f"{bucket}/{key}", "size": f"{thumb.width}x{thumb.height}"},
                )
                made.append({"key": target_key, "width": thumb.width, "height": thumb.height})
                print(f"{bucket}/{key} -> {TARGET}/{target_key} ({thumb.width}x{thumb.height})")
    return {"thumbnails": made}
