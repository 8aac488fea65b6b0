"""The interface a kind of trigger implements beyond the built-in ``timer`` and ``http``.

A kind validates its triggers' configuration, and hears about every trigger of
its type as it appears, changes, is disabled or goes away, so that a source that
runs on its own (a message-queue consumer, an object-storage event hook) can
start and stop with it. :class:`nimbus.control.triggers.TriggerService` keeps
the registry and calls these from the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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


@dataclass(frozen=True)
class TriggerState:
    """What a trigger's source is doing on this node, for the API (``status``, ``last_error``)."""

    #: In the kind's words, e.g. ``consuming``, ``error``, ``stopped``.
    status: str
    #: The newest error of its source (e.g. a broker that cannot be reached), if any.
    last_error: str | None = None


@runtime_checkable
class DescribedKind(Protocol):
    """Optional, beside :class:`TriggerKind`: a kind that says what the API shows of its
    triggers (e.g. without secrets) and how their sources are doing."""

    def public_config(self, trigger: Trigger) -> dict[str, Any]:
        """The configuration to show (secrets left out or redacted)."""
        ...

    def state(self, trigger: Trigger) -> TriggerState | None:
        """How the trigger's source is doing now; None when the kind does not say."""
        ...


@runtime_checkable
class AdmittingKind(Protocol):
    """Optional, beside :class:`TriggerKind`: a kind whose triggers need a check that
    depends on where they are created (e.g. an object trigger's bucket must belong to the
    trigger's namespace)."""

    async def admit(self, namespace: str, config: dict[str, Any]) -> None:
        """Raise ``InvalidTriggerError`` when a trigger with this (validated) configuration
        may not be created in ``namespace``."""
        ...
