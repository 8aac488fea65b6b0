"""SCF's API 3.0 actions, each a translation onto a Nimbus service call.

Nothing here decides anything about functions: validation, quotas, audit,
versions, aliases and invocation are the services' (the same ones ``/v1`` and the
Lambda API use). What is here is SCF's vocabulary: its actions, parameters,
defaults and error codes, and the settings Nimbus refuses because it cannot
honour them (unless given at a value that asks for nothing).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from nimbus.compat.scf_api import Action, ScfCall
from nimbus.compat.scf_shapes import (
    DEFAULT_HANDLER,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ScfError,
    alias_detail,
    alias_weights,
    environment,
    error_result,
    flag,
    function_detail,
    function_summary,
    integer,
    invalid,
    nimbus_runtime,
    published_version,
    refuse_unsupported,
    required_text,
    scf_time,
    text,
)
from nimbus.control.functions import FunctionChanges
from nimbus.domain.access import Permission
from nimbus.domain.audit import Actor
from nimbus.domain.function import (
    MAX_DESCRIPTION_CHARS,
    MEMORY_MB_RANGE,
    NAME_RE,
    TIMEOUT_S_RANGE,
    FunctionConfig,
    function_not_found,
    validate_settings,
)
from nimbus.domain.version import LATEST, parse_qualifier
from nimbus.errors import AliasNotFoundError, FunctionNotFoundError, InvalidSettingError

if TYPE_CHECKING:
    from nimbus.app import Platform

#: Fields the settings actions read (``Role`` is accepted and ignored: Nimbus has no CAM).
_SETTINGS = {"MemorySize", "Timeout", "Environment", "Description", "PublicNetConfig", "Role"}
#: Values that ask for nothing Nimbus lacks, per field.
_NEUTRAL = {"Type": {"Event"}, "CodeSource": {"ZipFile"}}
#: Where code can come from on SCF; Nimbus takes the zip itself only.
_OTHER_CODE_SOURCES = (
    "CosBucketName",
    "CosObjectName",
    "CosBucketRegion",
    "TempCosObjectName",
    "DemoId",
    "GitUrl",
    "ImageConfig",
)


def _code_limit(platform: Platform) -> int:
    """A zip of the largest size the code store takes, base64-encoded in JSON."""
    return platform.settings.package_limits.max_zip_bytes * 4 // 3 + 64 * 1024


def _event_limit(platform: Platform) -> int:
    """The largest event, as a JSON string inside the JSON body (escaping may double it)."""
    settings = platform.settings
    return 2 * max(settings.max_sync_payload_bytes, settings.max_async_payload_bytes) + 64 * 1024


def actions(platform: Platform) -> list[Action]:
    ops = ScfOps(platform)
    read, manage, invoke = Permission.READ, Permission.MANAGE, Permission.INVOKE
    return [
        Action("CreateFunction", ops.create_function, manage, _code_limit, names_function=False),
        Action("GetFunction", ops.get_function, read),
        Action("ListFunctions", ops.list_functions, read, names_function=False),
        Action("UpdateFunctionCode", ops.update_code, manage, _code_limit),
        Action("UpdateFunctionConfiguration", ops.update_configuration, manage),
        Action("DeleteFunction", ops.delete_function, manage),
        Action("Invoke", ops.invoke, invoke, _event_limit),
        Action("PublishVersion", ops.publish_version, manage),
        Action("ListVersionByFunction", ops.list_versions, read),
        Action("CreateAlias", ops.create_alias, manage),
        Action("GetAlias", ops.get_alias, read),
        Action("ListAliases", ops.list_aliases, read),
        Action("DeleteAlias", ops.delete_alias, manage),
    ]


class ScfOps:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # ---- functions ---------------------------------------------------------------------
    async def create_function(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(
            p,
            handled={"FunctionName", "Code", "Handler", "Runtime", "Namespace", *_SETTINGS},
            defaults=_NEUTRAL,
        )
        name = required_text(p, "FunctionName")
        if not NAME_RE.match(name):
            raise invalid(
                f"FunctionName {name!r} is not valid on Nimbus: use 1-64 letters, digits, '-' "
                "or '_', starting with a letter",
                "InvalidParameterValue.FunctionName",
            )
        runtime = nimbus_runtime(
            required_text(p, "Runtime", code="MissingParameter.Runtime"),
            [r.name for r in self._platform.registry.all()],
        )
        handler = text(p, "Handler", code="InvalidParameterValue.Handler") or (
            "bootstrap" if runtime == "custom" else DEFAULT_HANDLER
        )
        zipped = _zip_file(p.get("Code"))
        settings = _settings(p)
        functions = self._platform.functions
        try:
            await functions.get(call.namespace, name)
        except FunctionNotFoundError:
            pass
        else:
            raise ScfError(
                "ResourceInUse.Function",
                f"function {name!r} already exists in namespace {call.namespace!r}; change "
                "it with UpdateFunctionCode or UpdateFunctionConfiguration",
            )
        stored = await functions.upload_code(_once(zipped))
        await functions.put(
            call.namespace,
            name,
            FunctionChanges(
                runtime=runtime, handler=handler, code_sha256=stored.sha256, **settings
            ),
            replace=True,
            actor=Actor.of(call.key),
        )
        return {}

    async def get_function(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(p, handled={"FunctionName", "Qualifier", "Namespace", "ShowCode"})
        flag(p, "ShowCode")  # accepted; CodeInfo stays empty (the Lambda API serves the zip)
        head = await self._head(call)
        qualifier = text(p, "Qualifier", code="InvalidParameterValue.Qualifier") or LATEST
        parsed = parse_qualifier(qualifier)
        versions = self._platform.versions
        if parsed.latest:
            config = head
        elif parsed.version is not None:
            config = await versions.get_version(call.namespace, head.name, parsed.version)
        else:
            assert parsed.alias is not None
            alias = await versions.get_alias(call.namespace, head.name, parsed.alias)
            config = await versions.get_version(call.namespace, head.name, alias.version)
        return function_detail(config, head, qualifier)

    async def list_functions(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(
            p,
            handled={
                "Namespace",
                "Offset",
                "Limit",
                "Order",
                "Orderby",
                "SearchKey",
                "Description",
            },
        )
        offset, limit = _page(p)
        order = (text(p, "Order") or "ASC").upper()
        if order not in ("ASC", "DESC"):
            raise invalid(f"Order must be ASC or DESC, got {order!r}")
        order_by = text(p, "Orderby") or "FunctionName"
        sort_keys = {
            "FunctionName": lambda c: (c.name,),
            "AddTime": lambda c: (scf_time(c.created_at), c.name),
            "ModTime": lambda c: (scf_time(c.updated_at), c.name),
        }
        if order_by not in sort_keys:
            raise invalid(f"Orderby must be one of {', '.join(sort_keys)}, got {order_by!r}")
        search = (text(p, "SearchKey") or "").lower()
        description = (text(p, "Description") or "").lower()
        found = [
            c
            for c in await self._platform.functions.list(call.namespace)
            if search in c.name.lower() and description in c.description.lower()
        ]
        found.sort(key=sort_keys[order_by], reverse=order == "DESC")
        return {
            "Functions": [function_summary(c) for c in found[offset : offset + limit]],
            "TotalCount": len(found),
        }

    async def update_code(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(
            p,
            handled={"FunctionName", "Handler", "ZipFile", "Code", "Namespace", "Publish"},
            defaults=_NEUTRAL,
        )
        head = await self._head(call)
        # SCF takes the zip as ZipFile beside the other parameters, or inside Code.
        zipped = _zip_file({"ZipFile": p["ZipFile"]} if p.get("ZipFile") else p.get("Code"))
        changes: dict[str, Any] = {}
        handler = text(p, "Handler", code="InvalidParameterValue.Handler")
        if handler:
            changes["handler"] = handler
        stored = await self._platform.functions.upload_code(_once(zipped))
        await self._change(call, head.name, FunctionChanges(code_sha256=stored.sha256, **changes))
        return {}

    async def update_configuration(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(
            p, handled={"FunctionName", "Namespace", "Runtime", "Publish", *_SETTINGS}
        )
        head = await self._head(call)
        changes = _settings(p)
        runtime = text(p, "Runtime")
        if runtime:
            changes["runtime"] = nimbus_runtime(
                runtime, [r.name for r in self._platform.registry.all()]
            )
        await self._change(call, head.name, FunctionChanges(**changes))
        return {}

    async def _change(self, call: ScfCall, name: str, changes: FunctionChanges) -> None:
        """Apply ``changes`` to the function, then publish a version if ``Publish`` asks."""
        actor = Actor.of(call.key)
        await self._platform.functions.put(
            call.namespace, name, changes, replace=False, actor=actor
        )
        if flag(call.params, "Publish"):
            await self._platform.versions.publish(call.namespace, name, actor=actor)

    async def delete_function(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(p, handled={"FunctionName", "Namespace", "Qualifier"})
        name = _function_name(call)
        qualifier = text(p, "Qualifier", code="InvalidParameterValue.Qualifier")
        actor = Actor.of(call.key)
        if not qualifier:
            await self._platform.functions.delete(call.namespace, name, actor=actor)
        elif qualifier.isdigit():
            await self._platform.versions.delete_version(
                call.namespace, name, int(qualifier), actor=actor
            )
        else:
            raise invalid(
                f"Qualifier {qualifier!r} is not a published version: leave it out to delete "
                "the function, or give a version number to delete that version (aliases go "
                "with DeleteAlias)",
                "InvalidParameterValue.Qualifier",
            )
        return {}

    # ---- invocation ----------------------------------------------------------------------
    async def invoke(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(
            p,
            handled={
                "FunctionName",
                "InvocationType",
                "Qualifier",
                "ClientContext",
                "LogType",
                "Namespace",
            },
        )
        name = _function_name(call)
        kind = text(p, "InvocationType") or "RequestResponse"
        if kind not in ("RequestResponse", "Event"):
            raise invalid(f"InvocationType must be RequestResponse or Event, got {kind!r}")
        log_type = text(p, "LogType") or "None"
        if log_type not in ("None", "Tail"):
            raise invalid(f"LogType must be None or Tail, got {log_type!r}")
        qualifier = text(p, "Qualifier", code="InvalidParameterValue.Qualifier") or None
        parsed = parse_qualifier(qualifier)
        payload = _event(p.get("ClientContext"))
        platform = self._platform
        if kind == "Event":
            event = await platform.events.submit(call.namespace, name, payload, qualifier)
            return {"Result": _result(event.id)}
        limit = platform.settings.max_sync_payload_bytes
        if len(payload) > limit:
            raise invalid(
                f"ClientContext is {len(payload)} bytes; a synchronous call takes at most "
                f"{limit} bytes (an Event call at most {platform.settings.max_async_payload_bytes})",
                "InvalidParameter.RequestTooLarge",
            )
        result = await platform.dispatcher.invoke(
            call.namespace, name, payload, want_tail=log_type == "Tail", qualifier=parsed
        )
        out = _result(
            result.request_id,
            duration_ms=round(result.duration_ms, 3),
            billed_ms=result.billed_duration_ms,
            log=(result.log_tail or "") if log_type == "Tail" else "",
        )
        if result.error is not None:
            failure = error_result(result.error)
            out.update(RetMsg=failure, ErrMsg=failure, InvokeResult=1)
        else:
            raw = result.payload if result.payload is not None else b"null"
            out["RetMsg"] = raw.decode("utf-8", "replace")
        return {"Result": out}

    # ---- versions and aliases --------------------------------------------------------------
    async def publish_version(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(p, handled={"FunctionName", "Namespace", "Description"})
        head = await self._head(call)
        description = text(p, "Description", code="InvalidParameterValue.Description")
        version, _created = await self._platform.versions.publish(
            call.namespace, head.name, description=description, actor=Actor.of(call.key)
        )
        return published_version(version)

    async def list_versions(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(
            p, handled={"FunctionName", "Namespace", "Offset", "Limit", "Order", "OrderBy"}
        )
        head = await self._head(call)
        offset, limit = _page(p)
        order = (text(p, "Order") or "ASC").upper()
        if order not in ("ASC", "DESC"):
            raise invalid(f"Order must be ASC or DESC, got {order!r}")
        order_by = text(p, "OrderBy") or "AddTime"
        if order_by not in ("AddTime", "ModTime"):
            raise invalid(f"OrderBy must be AddTime or ModTime, got {order_by!r}")
        configs = [head, *await self._platform.versions.list_versions(call.namespace, head.name)]
        # $LATEST first, then versions by number (they are added in that order).
        configs.sort(
            key=lambda c: (c.version != LATEST, int(c.version) if c.version != LATEST else 0),
            reverse=order == "DESC",
        )
        page = configs[offset : offset + limit]
        return {
            "FunctionVersion": [c.version for c in page],
            "Versions": [
                {
                    "Version": c.version,
                    "Description": c.description,
                    "AddTime": scf_time(c.created_at),
                    "ModTime": scf_time(c.updated_at or c.created_at),
                    "Status": "Active",
                }
                for c in page
            ],
            "TotalCount": len(configs),
        }

    async def create_alias(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(
            p,
            handled={
                "FunctionName",
                "Namespace",
                "Name",
                "FunctionVersion",
                "RoutingConfig",
                "Description",
            },
        )
        head = await self._head(call)
        alias_name = required_text(p, "Name")
        version = required_text(p, "FunctionVersion")
        if version == LATEST:
            raise invalid(
                "Nimbus aliases point to published versions, not to $LATEST: publish a "
                "version (PublishVersion) and point the alias at its number"
            )
        if not version.isdigit() or int(version) < 1:
            raise invalid(f"FunctionVersion must be a published version number, got {version!r}")
        versions = self._platform.versions
        try:
            await versions.get_alias(call.namespace, head.name, alias_name)
        except AliasNotFoundError:
            pass
        else:
            raise ScfError(
                "ResourceInUse.Alias",
                f"function {head.name!r} already has an alias {alias_name!r}",
            )
        await versions.put_alias(
            call.namespace,
            head.name,
            alias_name,
            version=int(version),
            weights=alias_weights(p.get("RoutingConfig")),
            description=text(p, "Description", code="InvalidParameterValue.Description") or "",
            actor=Actor.of(call.key),
        )
        return {}

    async def get_alias(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(p, handled={"FunctionName", "Namespace", "Name"})
        head = await self._head(call)
        alias = await self._platform.versions.get_alias(
            call.namespace, head.name, required_text(p, "Name")
        )
        return alias_detail(alias)

    async def list_aliases(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(
            p, handled={"FunctionName", "Namespace", "FunctionVersion", "Offset", "Limit"}
        )
        head = await self._head(call)
        offset, limit = _page(p)
        aliases = await self._platform.versions.list_aliases(call.namespace, head.name)
        version = text(p, "FunctionVersion")
        if version:
            aliases = [a for a in aliases if version.isdigit() and int(version) in a.versions()]
        aliases.sort(key=lambda a: a.name)
        return {
            "Aliases": [alias_detail(a) for a in aliases[offset : offset + limit]],
            "TotalCount": len(aliases),
        }

    async def delete_alias(self, call: ScfCall) -> dict[str, Any]:
        p = call.params
        refuse_unsupported(p, handled={"FunctionName", "Namespace", "Name"})
        head = await self._head(call)
        await self._platform.versions.delete_alias(
            call.namespace, head.name, required_text(p, "Name"), actor=Actor.of(call.key)
        )
        return {}

    # ---- helpers -------------------------------------------------------------------------
    async def _head(self, call: ScfCall) -> FunctionConfig:
        return await self._platform.functions.get(call.namespace, _function_name(call))


def _function_name(call: ScfCall) -> str:
    """The ``FunctionName`` of an existing function; a name Nimbus cannot hold names no
    function here, and answers as a missing one does."""
    name = required_text(call.params, "FunctionName")
    if not NAME_RE.match(name):
        raise ScfError("ResourceNotFound.Function", function_not_found(name).message)
    return name


def _page(params: dict[str, Any]) -> tuple[int, int]:
    offset = integer(params, "Offset", code="InvalidParameterValue.Offset")
    limit = integer(params, "Limit", code="InvalidParameterValue.Limit")
    if offset is None:
        offset = 0
    if limit is None:
        limit = DEFAULT_LIMIT
    if offset < 0:
        raise invalid(f"Offset must be 0 or more, got {offset}", "InvalidParameterValue.Offset")
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(
            f"Limit must be between 1 and {MAX_LIMIT}, got {limit}", "InvalidParameterValue.Limit"
        )
    return offset, limit


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    """SCF's settings given in ``params``, checked with the domain's rules, as
    FunctionChanges fields (``Role`` is accepted and ignored)."""
    out: dict[str, Any] = {}
    memory = integer(params, "MemorySize", code="InvalidParameterValue.MemorySize")
    if memory is not None:
        lo, hi = MEMORY_MB_RANGE
        if memory > hi:
            raise invalid(
                f"MemorySize is at most {hi} MB here, got {memory}", "LimitExceeded.Memory"
            )
        if memory < lo:
            raise invalid(
                f"MemorySize is at least {lo} MB, got {memory}", "InvalidParameterValue.MemorySize"
            )
        out["memory_mb"] = memory
    timeout = integer(params, "Timeout", code="InvalidParameterValue.Timeout")
    if timeout is not None:
        lo, hi = TIMEOUT_S_RANGE
        if timeout > hi:
            raise invalid(f"Timeout is at most {hi} s here, got {timeout}", "LimitExceeded.Timeout")
        if timeout < lo:
            raise invalid(
                f"Timeout is at least {lo} s, got {timeout}", "InvalidParameterValue.Timeout"
            )
        out["timeout_s"] = timeout
    description = text(params, "Description", code="InvalidParameterValue.Description")
    if description is not None:
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise invalid(
                f"Description is longer than {MAX_DESCRIPTION_CHARS} characters",
                "InvalidParameterValue.Description",
            )
        out["description"] = description
    if params.get("Environment") is not None:
        env = environment(params["Environment"])
        try:
            validate_settings(
                memory_mb=MEMORY_MB_RANGE[0],
                timeout_s=TIMEOUT_S_RANGE[0],
                env=env,
                description="",
                max_instances=None,
            )
        except InvalidSettingError as exc:
            raise invalid(exc.message, "InvalidParameterValue.Environment") from None
        out["env"] = env
    public = params.get("PublicNetConfig")
    if public is not None:
        status = public.get("PublicNetStatus") if isinstance(public, dict) else None
        if status not in ("ENABLE", "DISABLE"):
            raise invalid(
                'PublicNetConfig must be {"PublicNetStatus": "ENABLE"} or "DISABLE"',
                "InvalidParameterValue.PublicNetConfig",
            )
        eip = public.get("EipConfig")
        if isinstance(eip, dict) and eip.get("EipStatus") == "ENABLE":
            raise invalid(
                "fixed egress IPs (EipConfig) are not supported on Nimbus",
                "UnsupportedOperation.EipFixed",
            )
        out["network"] = "egress" if status == "ENABLE" else "none"
    return out


def _zip_file(code: Any) -> bytes:
    if code is None:
        raise ScfError(
            "MissingParameter.Code", "Code.ZipFile (the zip, base64-encoded) is required"
        )
    if not isinstance(code, dict):
        raise invalid(
            "Code must carry ZipFile: the zip, base64-encoded", "InvalidParameterValue.Code"
        )
    others = sorted(k for k in _OTHER_CODE_SOURCES if code.get(k))
    if others:
        raise invalid(
            f"Nimbus takes code as ZipFile only; {', '.join(others)} are not supported "
            "(upload the zip itself, base64-encoded, as Code.ZipFile)",
            "InvalidParameterValue.Code",
        )
    data = code.get("ZipFile")
    if not isinstance(data, str) or not data:
        raise ScfError(
            "MissingParameter.Code", "Code.ZipFile (the zip, base64-encoded) is required"
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(
            "ZipFile is not valid base64", "InvalidParameterValue.ZipFileBase64BinasciiError"
        ) from None


def _event(context: Any) -> bytes:
    """``ClientContext`` (a JSON text; SCF hands it to the function as its event)."""
    if context is None or context == "":
        return b"{}"
    if isinstance(context, dict | list):
        return json.dumps(context).encode()
    if not isinstance(context, str):
        raise invalid("ClientContext must be a JSON text", "InvalidParameterValue.ClientContext")
    try:
        json.loads(context)
    except (ValueError, RecursionError) as exc:
        raise invalid(
            f"ClientContext is not valid JSON: {exc}", "InvalidParameterValue.ClientContext"
        ) from None
    return context.encode()


def _result(
    request_id: str, *, duration_ms: float = 0.0, billed_ms: int = 0, log: str = ""
) -> dict[str, Any]:
    """An invocation's ``Result``; an asynchronous one carries its request id only."""
    return {
        "FunctionRequestId": request_id,
        "Duration": duration_ms,
        "BillDuration": billed_ms,
        # Nimbus does not measure a call's memory use; its cgroup caps it at MemorySize.
        "MemUsage": 0,
        "Log": log,
        "RetMsg": "",
        "ErrMsg": "",
        "InvokeResult": 0,
    }


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
