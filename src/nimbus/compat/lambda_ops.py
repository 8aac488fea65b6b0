"""The Lambda API's operations, each a translation onto a Nimbus service call.

Nothing here decides anything about functions: validation, quotas, audit,
versions, aliases and invocation are the services' (the same ones ``/v1``
uses). What is here is Lambda's vocabulary: its operations, defaults and status
codes; bodies are read (and settings Nimbus cannot honour refused) by
:mod:`nimbus.compat.lambda_input`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.responses import FileResponse, Response

from nimbus.compat import lambda_input as body_in
from nimbus.compat import sigv4
from nimbus.compat.lambda_api import Call, Route, json_response
from nimbus.compat.shapes import (
    LambdaError,
    alias_configuration,
    alias_revision_id,
    alias_weights,
    code_sha256,
    conflict,
    function_arn,
    function_configuration,
    invalid_parameter,
    nimbus_runtime,
    not_found,
    paginate,
    parse_function_name,
    revision_id,
    valid_new_name,
    version_sort_key,
)
from nimbus.control.functions import FunctionChanges
from nimbus.domain.access import Permission
from nimbus.domain.audit import Actor
from nimbus.domain.function import NAME_RE, FunctionConfig, function_not_found
from nimbus.domain.version import LATEST, parse_qualifier
from nimbus.errors import AliasNotFoundError, FunctionNotFoundError

if TYPE_CHECKING:
    from nimbus.app import Platform

#: How long the code ``Location`` of ``GetFunction`` stays valid (AWS: 10 minutes).
CODE_URL_EXPIRES_S = 600
FUNCTIONS = "2015-03-31"
CONCURRENCY = "2017-10-31"
CONCURRENCY_GET = "2019-09-30"


def _code_limit(platform: Platform) -> int:
    """A zip of the largest size the code store takes, base64-encoded in JSON."""
    return platform.settings.package_limits.max_zip_bytes * 4 // 3 + 64 * 1024


def _payload_limit(platform: Platform) -> int:
    settings = platform.settings
    return max(settings.max_sync_payload_bytes, settings.max_async_payload_bytes)


def routes(platform: Platform) -> list[Route]:
    ops = LambdaOps(platform)
    fn = "{function}"
    read, manage, invoke = Permission.READ, Permission.MANAGE, Permission.INVOKE
    return [
        Route("POST", (FUNCTIONS, "functions"), ops.create_function, manage, _code_limit),
        Route("GET", (FUNCTIONS, "functions"), ops.list_functions, read),
        Route("GET", (FUNCTIONS, "functions", fn), ops.get_function, read),
        Route("DELETE", (FUNCTIONS, "functions", fn), ops.delete_function, manage),
        Route("GET", (FUNCTIONS, "functions", fn, "configuration"), ops.get_configuration, read),
        Route(
            "PUT", (FUNCTIONS, "functions", fn, "configuration"), ops.update_configuration, manage
        ),
        Route("PUT", (FUNCTIONS, "functions", fn, "code"), ops.update_code, manage, _code_limit),
        Route("GET", (FUNCTIONS, "functions", fn, "code"), ops.download_code, read),
        Route(
            "POST", (FUNCTIONS, "functions", fn, "invocations"), ops.invoke, invoke, _payload_limit
        ),
        Route("POST", (FUNCTIONS, "functions", fn, "versions"), ops.publish_version, manage),
        Route("GET", (FUNCTIONS, "functions", fn, "versions"), ops.list_versions, read),
        Route("POST", (FUNCTIONS, "functions", fn, "aliases"), ops.create_alias, manage),
        Route("GET", (FUNCTIONS, "functions", fn, "aliases"), ops.list_aliases, read),
        Route("GET", (FUNCTIONS, "functions", fn, "aliases", "{alias}"), ops.get_alias, read),
        Route("PUT", (FUNCTIONS, "functions", fn, "aliases", "{alias}"), ops.update_alias, manage),
        Route(
            "DELETE", (FUNCTIONS, "functions", fn, "aliases", "{alias}"), ops.delete_alias, manage
        ),
        Route("PUT", (CONCURRENCY, "functions", fn, "concurrency"), ops.put_concurrency, manage),
        Route(
            "DELETE", (CONCURRENCY, "functions", fn, "concurrency"), ops.delete_concurrency, manage
        ),
        Route("GET", (CONCURRENCY_GET, "functions", fn, "concurrency"), ops.get_concurrency, read),
    ]


class LambdaOps:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    # ---- functions ---------------------------------------------------------------------
    async def create_function(self, call: Call, _params: dict[str, str]) -> Response:
        body = call.json()
        body_in.refuse_unsupported(
            body,
            handled={
                "FunctionName",
                "Runtime",
                "Handler",
                "Code",
                "Description",
                "Timeout",
                "MemorySize",
                "Environment",
                "Publish",
            },
        )
        name_text = body_in.required_text(body, "FunctionName")
        ref = parse_function_name(name_text)
        if ref.qualifier is not None:
            raise invalid_parameter("FunctionName of a new function cannot have a qualifier")
        name = valid_new_name(ref.name)
        runtime = body_in.required_text(body, "Runtime")
        runtime = nimbus_runtime(runtime)
        handler = body_in.text_field(body, "Handler") or (
            "bootstrap" if runtime == "custom" else None
        )
        if handler is None:
            raise invalid_parameter("Handler is required, e.g. app.handler (module.function)")
        zipped = body_in.zip_file(body.get("Code"), "Code")
        namespace = call.namespace
        try:
            await self._platform.functions.get(namespace, name)
        except FunctionNotFoundError:
            pass
        else:
            raise conflict(f"Function already exist: {name}")
        stored = await self._platform.functions.upload_code(_once(zipped))
        changes: dict[str, Any] = {
            "runtime": runtime,
            "handler": handler,
            "code_sha256": stored.sha256,
            **body_in.settings(body),
        }
        config, _created = await self._platform.functions.put(
            namespace, name, FunctionChanges(**changes), replace=True, actor=Actor.of(call.key)
        )
        if body_in.flag(body, "Publish"):
            config, _ = await self._platform.versions.publish(
                namespace, name, actor=Actor.of(call.key)
            )
        return json_response(call, function_configuration(config, call.region), 201)

    async def get_function(self, call: Call, _params: dict[str, str]) -> Response:
        qualifier = self._qualifier(call)
        config, arn_qualifier = await self._resolve(call, qualifier)
        head = await self._head(call)
        code_query = [("Qualifier", qualifier)] if qualifier else []
        out: dict[str, Any] = {
            "Configuration": function_configuration(config, call.region, arn_qualifier),
            "Code": {"RepositoryType": "S3", "Location": _code_url(call, code_query)},
        }
        if head.reserved_concurrency is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": head.reserved_concurrency}
        return json_response(call, out)

    async def get_configuration(self, call: Call, _params: dict[str, str]) -> Response:
        config, arn_qualifier = await self._resolve(call, self._qualifier(call))
        return json_response(call, function_configuration(config, call.region, arn_qualifier))

    async def download_code(self, call: Call, _params: dict[str, str]) -> Response:
        """Not a Lambda operation: where ``GetFunction``'s ``Code.Location`` points (a
        presigned URL, valid 10 minutes, that downloads the zip without credentials)."""
        config, _ = await self._resolve(call, self._qualifier(call))
        path = self._platform.codestore.blob_path(config.code_sha256)
        return FileResponse(
            path,
            media_type="application/zip",
            filename=f"{config.name}.zip",
            headers={"x-amzn-RequestId": call.request_id},
        )

    async def list_functions(self, call: Call, _params: dict[str, str]) -> Response:
        all_versions = call.query.get("FunctionVersion")
        if all_versions not in (None, "ALL"):
            raise invalid_parameter("FunctionVersion must be ALL when given")
        configs: list[FunctionConfig] = []
        for head in await self._platform.functions.list(call.namespace):
            configs.append(head)
            if all_versions:
                configs.extend(
                    await self._platform.versions.list_versions(call.namespace, head.name)
                )
        page, marker = paginate(
            configs,
            lambda c: [c.name, *version_sort_key(c.version)],
            call.query.get("Marker"),
            body_in.max_items(call),
        )
        out: dict[str, Any] = {"Functions": [function_configuration(c, call.region) for c in page]}
        if marker:
            out["NextMarker"] = marker
        return json_response(call, out)

    async def update_configuration(self, call: Call, _params: dict[str, str]) -> Response:
        body = call.json()
        body_in.refuse_unsupported(
            body,
            handled={
                "Runtime",
                "Handler",
                "Description",
                "Timeout",
                "MemorySize",
                "Environment",
                "RevisionId",
            },
        )
        name = self._unqualified(call)
        head = await self._head(call)
        body_in.check_revision(body, revision_id(head))
        changes = body_in.settings(body)
        if "Runtime" in body:
            changes["runtime"] = nimbus_runtime(body_in.required_text(body, "Runtime"))
        if "Handler" in body:
            changes["handler"] = body_in.required_text(body, "Handler")
        config, _ = await self._platform.functions.put(
            call.namespace,
            name,
            FunctionChanges(**changes),
            replace=False,
            actor=Actor.of(call.key),
        )
        return json_response(call, function_configuration(config, call.region))

    async def update_code(self, call: Call, _params: dict[str, str]) -> Response:
        body = call.json()
        body_in.refuse_unsupported(body, handled={"ZipFile", "Publish", "DryRun", "RevisionId"})
        name = self._unqualified(call)
        head = await self._head(call)
        body_in.check_revision(body, revision_id(head))
        zipped = body_in.zip_file(body, "UpdateFunctionCode")
        stored = await self._platform.functions.upload_code(_once(zipped))
        if body_in.flag(body, "DryRun"):
            preview = function_configuration(head, call.region)
            preview.update(CodeSha256=code_sha256(stored.sha256), CodeSize=stored.size)
            return json_response(call, preview)
        config, _ = await self._platform.functions.put(
            call.namespace,
            name,
            FunctionChanges(code_sha256=stored.sha256),
            replace=False,
            actor=Actor.of(call.key),
        )
        if body_in.flag(body, "Publish"):
            config, _ = await self._platform.versions.publish(
                call.namespace, name, actor=Actor.of(call.key)
            )
        return json_response(call, function_configuration(config, call.region))

    async def delete_function(self, call: Call, _params: dict[str, str]) -> Response:
        name = call.function_name
        self._known_name(call)
        qualifier = self._qualifier(call)
        actor = Actor.of(call.key)
        if qualifier is None:
            await self._platform.functions.delete(call.namespace, name, actor=actor)
        elif qualifier.isdigit():
            await self._platform.versions.delete_version(
                call.namespace, name, int(qualifier), actor=actor
            )
        elif qualifier == LATEST:
            raise invalid_parameter(
                "$LATEST cannot be deleted on its own: delete the function (no Qualifier)"
            )
        else:
            raise invalid_parameter(
                f"Qualifier {qualifier!r} is an alias: delete it with DeleteAlias"
            )
        return json_response(call, None, 204)

    # ---- invocation ----------------------------------------------------------------------
    async def invoke(self, call: Call, _params: dict[str, str]) -> Response:
        name = call.function_name
        self._known_name(call)
        kind = call.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            raise invalid_parameter(
                f"InvocationType must be RequestResponse, Event or DryRun, got {kind!r}"
            )
        log_type = call.headers.get("x-amz-log-type", "None")
        if log_type not in ("None", "Tail"):
            raise invalid_parameter(f"LogType must be None or Tail, got {log_type!r}")
        qualifier = self._qualifier(call)
        parsed = parse_qualifier(qualifier)
        payload = call.body if call.body.strip() else b"{}"
        try:
            json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise LambdaError(
                "InvalidRequestContentException",
                400,
                f"Could not parse request body into json: {exc}",
            ) from None
        platform = self._platform
        if kind == "DryRun":
            await platform.directory.resolve(call.namespace, name, parsed)
            return json_response(call, None, 204)
        if kind == "Event":
            event = await platform.events.submit(call.namespace, name, payload, qualifier)
            return Response(b"", status_code=202, headers={"x-amzn-RequestId": event.id})
        limit = platform.settings.max_sync_payload_bytes
        if len(payload) > limit:
            raise LambdaError(
                "RequestTooLargeException",
                413,
                f"Request must be smaller than {limit} bytes for the Invoke operation",
            )
        result = await platform.dispatcher.invoke(
            call.namespace, name, payload, want_tail=log_type == "Tail", qualifier=parsed
        )
        headers = {
            "x-amzn-RequestId": result.request_id,
            "X-Amz-Executed-Version": result.version,
        }
        if log_type == "Tail":
            tail = (result.log_tail or "").encode()[-4096:]
            headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode("ascii")
        if result.error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
            out = json.dumps(result.error.to_dict()).encode()
        else:
            out = result.payload if result.payload is not None else b"null"
        return Response(out, status_code=200, media_type="application/json", headers=headers)

    # ---- versions ----------------------------------------------------------------------------
    async def publish_version(self, call: Call, _params: dict[str, str]) -> Response:
        body = call.json()
        body_in.refuse_unsupported(body, handled={"CodeSha256", "Description", "RevisionId"})
        name = self._unqualified(call)
        head = await self._head(call)
        body_in.check_revision(body, revision_id(head))
        wanted = body_in.text_field(body, "CodeSha256")
        if wanted and wanted != code_sha256(head.code_sha256):
            raise invalid_parameter(
                f"CodeSha256 ({wanted}) is different from the current CodeSha256 in $LATEST "
                f"({code_sha256(head.code_sha256)}); get the function and try again"
            )
        version, _ = await self._platform.versions.publish(
            call.namespace,
            name,
            description=body_in.text_field(body, "Description"),
            actor=Actor.of(call.key),
        )
        return json_response(call, function_configuration(version, call.region), 201)

    async def list_versions(self, call: Call, _params: dict[str, str]) -> Response:
        name = self._unqualified(call)
        head = await self._head(call)
        versions = await self._platform.versions.list_versions(call.namespace, name)
        page, marker = paginate(
            [head, *versions],
            lambda c: version_sort_key(c.version),
            call.query.get("Marker"),
            body_in.max_items(call),
        )
        out: dict[str, Any] = {
            "Versions": [function_configuration(c, call.region, c.version) for c in page]
        }
        if marker:
            out["NextMarker"] = marker
        return json_response(call, out)

    # ---- aliases -------------------------------------------------------------------------------
    async def create_alias(self, call: Call, _params: dict[str, str]) -> Response:
        body = call.json()
        body_in.refuse_unsupported(
            body, handled={"Name", "FunctionVersion", "Description", "RoutingConfig"}
        )
        name = self._unqualified(call)
        alias = body_in.required_text(body, "Name")
        versions = self._platform.versions
        try:
            await versions.get_alias(call.namespace, name, alias)
        except AliasNotFoundError:
            pass
        else:
            arn = function_arn(call.region, call.namespace, name, alias)
            raise conflict(f"Alias already exists: {arn}")
        stored, _ = await versions.put_alias(
            call.namespace,
            name,
            alias,
            version=body_in.alias_version(body_in.required_text(body, "FunctionVersion")),
            weights=alias_weights(body.get("RoutingConfig")),
            description=body_in.text_field(body, "Description") or "",
            actor=Actor.of(call.key),
        )
        return json_response(call, alias_configuration(stored, call.region), 201)

    async def update_alias(self, call: Call, params: dict[str, str]) -> Response:
        body = call.json()
        body_in.refuse_unsupported(
            body, handled={"FunctionVersion", "Description", "RoutingConfig", "RevisionId"}
        )
        name = self._unqualified(call)
        versions = self._platform.versions
        current = await versions.get_alias(call.namespace, name, params["alias"])
        body_in.check_revision(body, alias_revision_id(current))
        given_version = body_in.text_field(body, "FunctionVersion")
        description = body_in.text_field(body, "Description")
        stored, _ = await versions.put_alias(
            call.namespace,
            name,
            current.name,
            version=body_in.alias_version(given_version) if given_version else current.version,
            weights=(
                alias_weights(body.get("RoutingConfig"))
                if "RoutingConfig" in body
                else current.weights
            ),
            description=description if description is not None else current.description,
            actor=Actor.of(call.key),
        )
        return json_response(call, alias_configuration(stored, call.region))

    async def get_alias(self, call: Call, params: dict[str, str]) -> Response:
        name = self._unqualified(call)
        alias = await self._platform.versions.get_alias(call.namespace, name, params["alias"])
        return json_response(call, alias_configuration(alias, call.region))

    async def list_aliases(self, call: Call, _params: dict[str, str]) -> Response:
        name = self._unqualified(call)
        aliases = await self._platform.versions.list_aliases(call.namespace, name)
        version = call.query.get("FunctionVersion")
        if version is not None:
            aliases = [a for a in aliases if version.isdigit() and int(version) in a.versions()]
        page, marker = paginate(
            aliases, lambda a: [a.name], call.query.get("Marker"), body_in.max_items(call)
        )
        out: dict[str, Any] = {"Aliases": [alias_configuration(a, call.region) for a in page]}
        if marker:
            out["NextMarker"] = marker
        return json_response(call, out)

    async def delete_alias(self, call: Call, params: dict[str, str]) -> Response:
        name = self._unqualified(call)
        await self._platform.versions.delete_alias(
            call.namespace, name, params["alias"], actor=Actor.of(call.key)
        )
        return json_response(call, None, 204)

    # ---- reserved concurrency ------------------------------------------------------------------
    async def put_concurrency(self, call: Call, _params: dict[str, str]) -> Response:
        body = call.json()
        body_in.refuse_unsupported(body, handled={"ReservedConcurrentExecutions"})
        name = self._unqualified(call)
        reserved = body_in.int_field(body, "ReservedConcurrentExecutions")
        if reserved is None:
            raise invalid_parameter("ReservedConcurrentExecutions is required")
        head = await self._platform.versions.set_concurrency(
            call.namespace, name, reserved, actor=Actor.of(call.key)
        )
        return json_response(call, {"ReservedConcurrentExecutions": head.reserved_concurrency})

    async def delete_concurrency(self, call: Call, _params: dict[str, str]) -> Response:
        name = self._unqualified(call)
        await self._platform.versions.set_concurrency(
            call.namespace, name, None, actor=Actor.of(call.key)
        )
        return json_response(call, None, 204)

    async def get_concurrency(self, call: Call, _params: dict[str, str]) -> Response:
        self._unqualified(call)
        head = await self._head(call)
        out: dict[str, Any] = {}
        if head.reserved_concurrency is not None:
            out["ReservedConcurrentExecutions"] = head.reserved_concurrency
        return json_response(call, out)

    # ---- helpers -----------------------------------------------------------------------------
    def _known_name(self, call: Call) -> None:
        """A name Nimbus cannot hold names no function here: answer as for a missing one."""
        if not NAME_RE.match(call.function_name):
            raise not_found(function_not_found(call.function_name).message)

    def _unqualified(self, call: Call) -> str:
        self._known_name(call)
        assert call.function is not None
        if call.function.qualifier not in (None, LATEST):
            raise invalid_parameter(
                f"this operation takes an unqualified FunctionName, got qualifier "
                f"{call.function.qualifier!r}"
            )
        return call.function.name

    def _qualifier(self, call: Call) -> str | None:
        """The qualifier of the path's ``NAME:QUALIFIER`` or of ``?Qualifier=``."""
        assert call.function is not None
        in_name, in_query = call.function.qualifier, call.query.get("Qualifier")
        if in_name and in_query and in_name != in_query:
            raise invalid_parameter(
                "The derived qualifier from the function name does not match the specified "
                "qualifier."
            )
        return in_name or in_query or None

    async def _head(self, call: Call) -> FunctionConfig:
        self._known_name(call)
        return await self._platform.functions.get(call.namespace, call.function_name)

    async def _resolve(
        self, call: Call, qualifier: str | None
    ) -> tuple[FunctionConfig, str | None]:
        """The configuration a qualifier names, and the qualifier its ARN carries."""
        head = await self._head(call)
        parsed = parse_qualifier(qualifier)
        versions = self._platform.versions
        if parsed.latest:
            return head, qualifier
        if parsed.version is not None:
            return await versions.get_version(call.namespace, head.name, parsed.version), None
        assert parsed.alias is not None
        alias = await versions.get_alias(call.namespace, head.name, parsed.alias)
        config = await versions.get_version(call.namespace, head.name, alias.version)
        return config, alias.name


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _code_url(call: Call, params: list[tuple[str, str]]) -> str:
    """A presigned URL, signed with the caller's own access key, that downloads the code."""
    assert call.function is not None
    path = f"/{FUNCTIONS}/functions/{quote(call.function.name, safe='')}/code"
    query = sigv4.presign_query(
        method="GET",
        host=call.host,
        raw_path=path.encode(),
        params=params,
        access_key_id=call.access_key_id,
        secret=call.secret,
        region=call.region,
        service="lambda",
        now=datetime.now(UTC),
        expires_s=CODE_URL_EXPIRES_S,
    )
    return f"{call.scheme}://{call.host}{path}?{query}"
