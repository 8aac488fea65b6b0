"""Deploy examples/hello-python to Nimbus with the unmodified boto3 Lambda client:
create (or update) the function, publish a version, point the alias ``live`` at it,
and invoke it with its log tail.

    export AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:8080 AWS_DEFAULT_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=NIMB... AWS_SECRET_ACCESS_KEY=...   # from `nimbus key create`
    python examples/boto3/deploy.py
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import boto3

SOURCE = Path(__file__).resolve().parents[1] / "hello-python"
NAME = "hello-boto3"


def package(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*.py")):
            zf.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def main() -> None:
    lam = boto3.client("lambda")  # endpoint, region and keys come from the environment
    code = package(SOURCE)
    try:
        lam.update_function_code(FunctionName=NAME, ZipFile=code)
        lam.get_waiter("function_updated").wait(FunctionName=NAME)
    except lam.exceptions.ResourceNotFoundException:
        lam.create_function(
            FunctionName=NAME,
            Runtime="python3.11",
            Role="arn:aws:iam::123456789012:role/unused-by-nimbus",
            Handler="app.handler",
            Code={"ZipFile": code},
            Description="examples/hello-python, deployed with boto3",
        )
        lam.get_waiter("function_active").wait(FunctionName=NAME)
    version = lam.publish_version(FunctionName=NAME)["Version"]
    try:
        lam.update_alias(FunctionName=NAME, Name="live", FunctionVersion=version)
    except lam.exceptions.ResourceNotFoundException:
        lam.create_alias(FunctionName=NAME, Name="live", FunctionVersion=version)
    out = lam.invoke(
        FunctionName=NAME, Qualifier="live", Payload=b'{"name": "boto3"}', LogType="Tail"
    )
    print("version", out["ExecutedVersion"], json.loads(out["Payload"].read()))
    print(base64.b64decode(out["LogResult"]).decode())


if __name__ == "__main__":
    main()
