"""Versions and aliases: immutable snapshots of a function, and names that point at them.

``$LATEST`` is the editable head. Publishing snapshots its code and settings as
version 1, 2, ... (publishing an unchanged head returns the version that already
has its settings). An alias (``prod``, ``canary``) points to one version, or
splits traffic between that version and one other by weight, as Lambda's
``RoutingConfig`` does. A qualifier names what a call runs: ``$LATEST``, a
version number, or an alias.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from datetime import datetime

from nimbus.domain.function import FunctionConfig
from nimbus.errors import (
    AliasNotFoundError,
    InvalidQualifierError,
    InvalidSettingError,
    VersionNotFoundError,
)

LATEST = "$LATEST"
ALIAS_RE = re.compile(r"^(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}$")
MAX_DESCRIPTION_CHARS = 256


#: The settings a version freezes (everything a caller sets, no bookkeeping).
SNAPSHOT_FIELDS = (
    "runtime",
    "handler",
    "code_sha256",
    "memory_mb",
    "timeout_s",
    "env",
    "description",
    "max_instances",
    "secret_env",
    "network",
)


def snapshot_digest(config: FunctionConfig) -> str:
    """Identifies a function's settings: equal digests, equal versions."""
    values = {f: getattr(config, f) for f in SNAPSHOT_FIELDS if f != "description"}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def as_version(config: FunctionConfig, number: int) -> FunctionConfig:
    """The configuration that runs as version ``number`` (its pools are keyed by it)."""
    return dataclasses.replace(config, version=str(number))


@dataclass(frozen=True)
class Alias:
    namespace: str
    function: str
    name: str
    version: int
    #: At most one other version and the share of calls (0 < weight < 1) it gets.
    weights: dict[int, float] = field(default_factory=dict)
    description: str = ""
    revision: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def versions(self) -> list[int]:
        return [self.version, *self.weights]

    def pick(self, rand: random.Random | None = None) -> int:
        """The version one call runs: the additional one with its weight, else the main."""
        if self.weights:
            r = (rand or random).random()
            for version, weight in self.weights.items():
                if r < weight:
                    return version
                r -= weight
        return self.version


def validate_alias_name(name: str) -> str:
    if not ALIAS_RE.match(name) or name == LATEST:
        raise InvalidQualifierError(
            f"invalid alias name {name!r}: use 1-128 letters, digits, '-' or '_', "
            "not only digits (those are version numbers)"
        )
    return name


def validate_weights(version: int, weights: dict[int, float]) -> dict[int, float]:
    if len(weights) > 1:
        raise InvalidSettingError(
            "an alias may split traffic with one other version only, e.g. --weight 4=10"
        )
    for other, weight in weights.items():
        if other == version:
            raise InvalidSettingError(
                f"version {other} is the alias's main version; give the weight to another one"
            )
        if not 0.0 < weight < 1.0:
            raise InvalidSettingError(
                f"the weight of version {other} must be between 0 and 1 (exclusive), "
                f"got {weight}; it is the share of calls that version gets"
            )
    return dict(weights)


@dataclass(frozen=True)
class Qualifier:
    """What a call names: ``$LATEST``, a version number, or an alias."""

    latest: bool = False
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return str(self.version)
        return self.alias if self.alias is not None else LATEST


def parse_qualifier(text: str | None) -> Qualifier:
    if text is None or text == "" or text == LATEST:
        return Qualifier(latest=True)
    if text.isdigit():
        number = int(text)
        if number < 1:
            raise InvalidQualifierError("version numbers start at 1")
        return Qualifier(version=number)
    return Qualifier(alias=validate_alias_name(text))


def split_name(name: str) -> tuple[str, str | None]:
    """``hello:prod`` → ("hello", "prod"); ``hello`` → ("hello", None)."""
    base, sep, qualifier = name.partition(":")
    return base, (qualifier if sep else None)


def version_not_found(function: str, number: int) -> VersionNotFoundError:
    return VersionNotFoundError(
        f"function {function!r} has no version {number}; list them with "
        f"`nimbus versions {function}`"
    )


def alias_not_found(function: str, alias: str) -> AliasNotFoundError:
    return AliasNotFoundError(
        f"function {function!r} has no alias {alias!r}; list them with "
        f"`nimbus alias list {function}`"
    )
