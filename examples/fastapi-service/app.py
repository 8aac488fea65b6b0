"""A FastAPI app served by Nimbus as an HTTP service: JSON routes, a streamed
response, a WebSocket and a lifespan, with no adapter and no Nimbus import.

The same file runs under `uvicorn app:app`. Deployed with the handler `app:app`,
it answers at its function URL; its OpenAPI docs are at `.../docs`.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, float]]:
    # Runs once per instance, before its first request (open connection pools here).
    yield {"started_at": time.time()}


app = FastAPI(title="Nimbus FastAPI example", lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


ITEMS: dict[int, Item] = {}  # per instance: use a database for real data


@app.get("/")
async def root(request: Request) -> dict[str, object]:
    return {
        "service": "fastapi-items",
        "instance_started_at": request.state.started_at,
        "docs": request.scope["root_path"] + "/docs",
    }


@app.put("/items/{item_id}")
async def put_item(item_id: int, item: Item) -> dict[str, object]:
    ITEMS[item_id] = item
    return {"item_id": item_id, **item.model_dump()}


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> Item:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return ITEMS[item_id]


@app.get("/ticks")
async def ticks(n: int = 3) -> StreamingResponse:
    """Each line reaches the client as soon as it is yielded."""

    async def lines() -> AsyncIterator[str]:
        for i in range(1, n + 1):
            yield f"tick {i}\n"
            await asyncio.sleep(0.5)

    return StreamingResponse(lines(), media_type="text/plain")


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    """Echoes text messages; "bye" ends the session with close code 4000."""
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close(code=4000, reason="bye")
                return
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect as exc:
        print(f"client left with code {exc.code}")
