"""The bench's hello handler behind a heavy module-level import: asyncio, the HTTP and
TLS stack, XML, SQLite, email and concurrency from the standard library."""

import asyncio  # noqa: F401
import concurrent.futures  # noqa: F401
import email.parser  # noqa: F401
import http.client  # noqa: F401
import sqlite3  # noqa: F401
import ssl  # noqa: F401
import urllib.request  # noqa: F401
import xml.etree.ElementTree  # noqa: F401


def handler(event, context):  # type: ignore[no-untyped-def]
    return {"hello": event.get("name", "world")}
