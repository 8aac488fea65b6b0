"""The interface a kind of trigger implements beyond the built-in ``timer`` and ``http``.

A kind validates its triggers' configuration, and hears about every trigger of
its type as it appears, changes, is disabled or goes away, so that a source that
runs on its own (a message-queue consumer, an object-storage event hook) can
start and stop with it. :class:`nimbus.control.triggers.TriggerService` keeps
the registry and calls these from the event loop.
"""

from __future__ import annotations

from typing import Any, Protocol

from nimbus.domain.trigger import Trigger


class TriggerKind(Protocol):
    #: The trigger ``type`` this kind serves, e.g. ``object``.
    type: str

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        """The clean configuration to store; raise ``InvalidTriggerError`` with what to
        write instead."""
        ...

    def changed(self, trigger: Trigger) -> None:
        """A trigger of this kind was loaded, created, enabled or disabled."""
        ...

    def removed(self, trigger: Trigger) -> None:
        """A trigger of this kind was deleted (or its function was)."""
        ...

    async def start(self) -> None:
        """The server started (after every stored trigger was handed to :meth:`changed`)."""
        ...

    async def stop(self) -> None:
        """The server is stopping."""
        ...
