"""examples/thumbnails, run the way its README says: the shell commands of its ``sh`` blocks
and the Python of its ``python`` block, in order, against a real server.

One deviation: the ``pip install --target build`` line would download Pillow and boto3;
the test copies the same distributions from this environment (Python 3.11, this
machine's architecture, as the line asks for) into ``build/`` instead.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.integration.harness import TOKEN, Server, vendored, wait_until
from tests.integration.s3_helpers import access_key, s3_client

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "thumbnails"
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _steps() -> list[tuple[str, str]]:
    """The README's code, in order: ``("sh", command)`` for each shell command (comments
    and blank lines left out) and ``("python", source)`` for each Python block."""
    steps = []
    for lang, body in BLOCK.findall((EXAMPLE / "README.md").read_text()):
        if lang == "python":
            steps.append(("python", body))
            continue
        for line in body.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                steps.append(("sh", line))
    return steps


def test_the_readme_runs_as_written(server: Server, tmp_path: Path) -> None:
    workdir = tmp_path / "repo"
    shutil.copytree(EXAMPLE, workdir / "examples" / "thumbnails")
    key = access_key(server)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "NIMBUS_URL": server.url,
        "NIMBUS_TOKEN": TOKEN,
        "AWS_ACCESS_KEY_ID": key["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": key["secret_access_key"],
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    steps = _steps()
    commands = [text for kind, text in steps if kind == "sh"]
    assert any(c.startswith("nimbus deploy build") for c in commands), commands
    assert any(c.startswith("nimbus trigger add-object") for c in commands), commands
    assert [kind for kind, _ in steps].count("python") == 1
    s3 = s3_client(server, key)

    def thumbnails() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket="thumbnails").get("Contents", [])]

    cwd = workdir
    outputs: dict[str, str] = {}
    for kind, text in steps:
        if kind == "python":  # the upload; "a moment later" the thumbnails are there
            done = subprocess.run(
                [sys.executable, "-c", text], cwd=cwd, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            assert wait_until(lambda: len(thumbnails()) == 3, timeout=60), server.logs("thumbnails")
            continue
        if text.startswith("nimbus key create"):
            continue  # the test made its key pair above (the same call, over the API)
        if text.startswith("export "):
            for name, value in re.findall(r"(\w+)=(\S+)", text):
                env[name] = value.replace("$NIMBUS_URL", server.url)
            continue
        if text.startswith("cd "):
            cwd = workdir / text[3:]
            continue
        if "pip install" in text:
            assert "--python-version 3.11" in text and "pillow boto3" in text
            for name, data in vendored("pillow", "boto3").items():
                target = cwd / "build" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data if isinstance(data, bytes) else data.encode())
            continue
        done = subprocess.run(
            ["bash", "-c", text], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{text}\n{done.stdout}\n{done.stderr}"
        outputs[text] = done.stdout

    sizes = {}
    for name in thumbnails():
        body = s3.get_object(Bucket="thumbnails", Key=name)["Body"].read()
        with Image.open(io.BytesIO(body)) as thumb:
            assert thumb.format == "JPEG"
            sizes[name] = thumb.size
    assert sizes == {
        "64/holiday/sunset.jpg": (64, 48),
        "256/holiday/sunset.jpg": (256, 192),
        "1024/holiday/sunset.jpg": (1024, 768),
    }
    listing = outputs["aws s3 ls s3://thumbnails --recursive"]
    assert all(name in listing for name in sizes), listing
