"""``nimbus serve``: one process running the whole platform behind uvicorn."""

from __future__ import annotations

import logging
import resource
import signal
import sys

import uvicorn

from nimbus.app import Platform
from nimbus.config import Settings
from nimbus.errors import NimbusError
from nimbus.gateway.app import create_asgi
from nimbus.gateway.protocol import guarded_protocol


def _banner(settings: Settings, platform: Platform, new_secret: str | None) -> str:
    lines = [
        f"Nimbus listening on {settings.base_url}",
        f"data dir: {settings.data_dir}",
        platform.sandbox.describe(),
        "runtimes: " + ", ".join(r.name for r in platform.registry.all()),
    ]
    if new_secret:
        lines += ["", "Admin API key (shown only this once; store it safely):", f"  {new_secret}"]
    token = new_secret or ("$NIMBUS_ADMIN_TOKEN" if settings.admin_token else "<your key>")
    lines += [
        "",
        "Use the CLI from another shell:",
        f"  export NIMBUS_URL={settings.base_url}",
        f"  export NIMBUS_TOKEN={token}",
    ]
    return "\n".join(lines)


def _raise_open_files_limit() -> None:
    """Every connection and instance holds descriptors: take all the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve_forever(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        platform = Platform(settings)
    except NimbusError as exc:
        print(f"nimbus serve: {exc.message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from exc
    new_secret = platform.keys.ensure_admin(settings.admin_token)
    print(_banner(settings, platform, new_secret), flush=True)
    _raise_open_files_limit()
    config = uvicorn.Config(
        create_asgi(platform),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=guarded_protocol(settings.client_timeout_s),
        lifespan="on",
        proxy_headers=False,  # nothing here reads the client address; trust no header
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    # uvicorn re-raises the signal that stopped it once shutdown is done; with these
    # handlers in place a graceful stop ends `nimbus serve` with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run()
