"""Kubernetes I/O in one place: the REST paths, the patch content types, the resourceVersion-guarded
writes of a ModelDeployment, and what an error answer means.

Everything in modelship that reads or writes the cluster (the reconciler, the kopf handlers, the
smoke test, the gatewayAPI and istio routers, the kubectl plugin, the test helpers and the demo) goes
through `Storage`; `modelship.kube.client` is only the transport under it.

Errors: an answer outside 2xx raises a `KubeError`, as the subclass its status names
(`NotFound` 404, `Forbidden` 403, `Conflict` 409, `Gone` 410, `Invalid` 422); `get` turns NotFound into None.

Crash injection (for tests): `Storage(api, crash_after=k)` performs its k-th write and then
raises `SimulatedCrash`, as if the process had died right after it; every later write raises it
too. A write is every request that changes cluster state and succeeded: a status or spec PATCH,
a server-side apply, a JSON patch (the route), a DELETE, a POST, an Event's POST or series PATCH
(a pass that stops after posting some of its Events leaves the rest to the next one, which must
post each once: `modelship.core.engine.events`). A POST refused as AlreadyExists wrote nothing.
`SimulatedCrash` is a BaseException, so no `except Exception` on the way up can swallow it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, Literal

from kubernetes import client as k8s

from modelship import api, metrics
from modelship.kube import client

APPLY = "application/apply-patch+yaml"  # server-side apply; a JSON body is valid YAML
MERGE = "application/merge-patch+json"  # RFC 7386: null removes a key, lists are replaced
JSON_PATCH = "application/json-patch+json"  # RFC 6902: ops, including `test`
FIELD_MANAGER = "modelship"

Manifest = dict[str, Any]

# A request's verb as the API server names it (apiserver_request_total), for the operator's own
# request counter; a server-side apply and a collection's GET say what they are.
_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


# ---- errors ---------------------------------------------------------------------------------------


class KubeError(Exception):
    """An answer outside 2xx."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class Forbidden(KubeError):
    """403: RBAC does not allow it."""


class NotFound(KubeError):
    """404: no such object (or no such API)."""


class Conflict(KubeError):
    """409: the resourceVersion sent is not the object's any more, or it already exists."""


class Invalid(KubeError):
    """422: refused by validation (or a JSON patch `test` op that failed)."""


class Gone(KubeError):
    """410: a watch asked for a resourceVersion the server no longer keeps; list again."""


_BY_STATUS: dict[int, type[KubeError]] = {
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


def error_for(status: int, body: Any) -> KubeError:
    return _BY_STATUS.get(status, KubeError)(status, body)


class SimulatedCrash(BaseException):
    """Raised by a `Storage` made with `crash_after`: the operator "died" after that many writes."""


# ---- paths ----------------------------------------------------------------------------------------


def md_path(namespace: str | None, name: str = "") -> str:
    """A ModelDeployment, or the list in `namespace` (None: in all namespaces)."""
    where = f"/namespaces/{namespace}" if namespace else ""
    base = f"/apis/{api.GROUP}/{api.VERSION}{where}/{api.PLURAL}"
    return f"{base}/{name}" if name else base


def object_path(manifest: Manifest) -> str:
    """Where `manifest` lives (namespaced by its metadata.namespace, else cluster-scoped)."""
    meta = manifest["metadata"]
    prefix = "/api/v1" if manifest["apiVersion"] == "v1" else f"/apis/{manifest['apiVersion']}"
    where = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{prefix}{where}/{manifest['kind'].lower()}s/{meta['name']}"


def deployments_path(namespace: str, name: str = "") -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    return f"{base}/{name}" if name else base


def service_path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/services"
    return f"{base}/{name}" if name else base


def route_path(namespace: str, name: str = "") -> str:
    base = f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes"
    return f"{base}/{name}" if name else base


def virtualservice_path(namespace: str, name: str = "") -> str:
    """An Istio VirtualService (the `istio` router's weights), or the list in `namespace`."""
    base = f"/apis/networking.istio.io/v1/namespaces/{namespace}/virtualservices"
    return f"{base}/{name}" if name else base


def pods_path(namespace: str | None = None) -> str:
    return f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"


def jobs_path(namespace: str, name: str = "") -> str:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return f"{base}/{name}" if name else base


def events_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/events"


EVENTS_API = "events.k8s.io/v1"  # the Event API with `series`: a repeat updates one object


def series_events_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{EVENTS_API}/namespaces/{namespace}/events"
    return f"{base}/{name}" if name else base


def secrets_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets"


def secret_path(namespace: str, name: str) -> str:
    return f"{secrets_path(namespace)}/{name}"


def endpointslices_path(namespace: str) -> str:
    return f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


def crd_path(name: str) -> str:
    return f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"


NODES_PATH = "/api/v1/nodes"
SUBJECT_ACCESS_REVIEWS_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


# ---- patches --------------------------------------------------------------------------------------


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) from `old` to `new`: null removes a key, lists are replaced.

    The operator writes status this way, not by server-side apply: fields a person set with
    `modelship abort` (another field manager), or that an older modelship wrote, must go away
    when the operator's status no longer has them.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() | new.keys():
        if key not in new:
            patch[key] = None
        elif key not in old:
            patch[key] = new[key]
        elif old[key] != new[key]:
            patch[key] = merge_patch(old[key], new[key]) if isinstance(new[key], dict) else new[key]
    return patch


# ---- the storage ----------------------------------------------------------------------------------


class Storage:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        crash_after: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.api = api_client
        self.crash_after = crash_after
        self.headers = headers  # sent with every call (impersonation)
        self.writes = 0  # counted writes so far (see the module's docstring)

    def impersonating(self, user: str, groups: tuple[str, ...]) -> Storage:
        """The same cluster and credentials, every call made as `user` in `groups` (the API server
        checks that these credentials may impersonate them, then authorizes and audits as them)."""
        said = (("Impersonate-User", user), *(("Impersonate-Group", g) for g in groups))
        return Storage(self.api, headers=said)

    @property
    def crashed(self) -> bool:
        return self.crash_after is not None and self.writes >= self.crash_after

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        verb: str | None = None,
    ) -> Manifest:
        """One call; a typed `KubeError` for an answer outside 2xx. Anything but GET is a write.
        `verb`: what the request counter calls it (default: from `method`)."""
        write = method != "GET"
        if write and self.crashed:
            raise SimulatedCrash(f"the operator stopped after {self.writes} writes")
        named = verb or _VERBS.get(method, method.lower())
        try:
            status, data = client.call(self.api, method, path, query, body, content_type, self.headers)
        except Exception:  # no answer (connection refused, timeout): counted, then raised
            metrics.API_REQUESTS.labels(named, "error").inc()
            raise
        metrics.API_REQUESTS.labels(named, str(status)).inc()
        if not 200 <= status < 300:
            raise error_for(status, data)
        if write:
            self.writes += 1
            if self.crashed:
                raise SimulatedCrash(f"the operator stopped after write {self.writes}: {method} {path}")
        return data if isinstance(data, dict) else {}

    def get(self, path: str, **query: str) -> Manifest | None:
        try:
            return self.request("GET", path, query=query)
        except NotFound:
            return None

    def items(self, path: str, **query: str) -> list[Manifest]:
        """The items of a list (a label or field selector in `query`)."""
        items: list[Manifest] = self.request("GET", path, query=query, verb="list").get("items") or []
        return items

    def keys(self, path: str, page: int = 250) -> list[tuple[str, str]]:
        """(namespace, name) of each item of a list, read `page` items at a time: a list of
        thousands of objects is never held whole (its parse, freed at once, would set the
        process's peak memory)."""
        found: list[tuple[str, str]] = []
        query = {"limit": str(page)}
        while True:
            data = self.request("GET", path, query=query, verb="list")
            metas = [item["metadata"] for item in data.get("items") or []]
            found += [(meta.get("namespace", ""), meta["name"]) for meta in metas]
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return found
            query = {"limit": str(page), "continue": token}

    def create(self, path: str, manifest: Manifest, **query: str) -> Manifest:
        return self.request("POST", path, query=query, body=manifest)

    def apply(self, manifest: Manifest, field_manager: str = FIELD_MANAGER) -> Manifest:
        """Server-side apply, taking over fields others changed (drift is reverted)."""
        query = {"fieldManager": field_manager, "force": "true"}
        return self.request(
            "PATCH", object_path(manifest), query=query, body=manifest, content_type=APPLY, verb="apply"
        )

    def merge(self, path: str, patch: Manifest, field_manager: str = FIELD_MANAGER) -> Manifest:
        """A merge patch without a resourceVersion guard (a person's edit of a spec, say)."""
        query = {"fieldManager": field_manager}
        return self.request("PATCH", path, query=query, body=patch, content_type=MERGE)

    def json_patch(self, path: str, ops: list[dict[str, Any]]) -> Manifest:
        return self.request("PATCH", path, body=ops, content_type=JSON_PATCH)

    def replace_if_unchanged(self, path: str, pointer: str, read: Any, wanted: Any) -> bool:
        """Set the field at `pointer` to `wanted` only if it still holds what was `read` (a JSON
        patch `test`, then `replace`): a concurrent edit is never overwritten blindly. False when
        it changed meanwhile; the next pass reads it again."""
        ops = [
            {"op": "test", "path": pointer, "value": read},
            {"op": "replace", "path": pointer, "value": wanted},
        ]
        try:
            self.json_patch(path, ops)
        except (Conflict, Invalid):
            return False
        return True

    def delete(self, path: str) -> bool:
        """Delete in the background (dependents follow); False when it was already gone."""
        try:
            self.request("DELETE", path, body={"propagationPolicy": "Background"})
        except NotFound:
            return False
        return True

    def patch_md(
        self,
        namespace: str,
        name: str,
        part: Literal["spec", "status"],
        patch: Manifest,
        resource_version: str,
        field_manager: str = FIELD_MANAGER,
    ) -> str | None:
        """Merge `patch` into the ModelDeployment's spec or status, only if it is still at
        `resource_version`: its new resourceVersion, or None when it changed meanwhile (409)."""
        path = md_path(namespace, name) + ("/status" if part == "status" else "")
        body = {"metadata": {"resourceVersion": resource_version}, part: patch}
        try:
            written = self.merge(path, body, field_manager)
        except Conflict:
            return None
        return str(written["metadata"]["resourceVersion"])

    def watch(self, path: str, resource_version: str, seconds: int, **query: str) -> Iterator[Manifest]:
        """The watch events of a list (`{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": ...}`) after
        `resource_version`, for at most `seconds` (the server ends the stream). An ERROR event raises
        its `KubeError`: `Gone` when the version is too old to watch from."""
        query = {
            **query,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        status, lines = client.stream(self.api, path, query, seconds + 30, self.headers)
        metrics.API_REQUESTS.labels("watch", str(status)).inc()
        if not 200 <= status < 300:
            body = b"".join(lines)
            raise error_for(status, json.loads(body) if body.startswith(b"{") else body.decode())
        for line in lines:
            event: Manifest = json.loads(line)
            if event.get("type") == "ERROR":
                failure = event.get("object") or {}
                raise error_for(int(failure.get("code") or 500), failure)
            yield event

    def post_event(self, namespace: str, event: Manifest) -> None:
        """POST an Event, core/v1 or events.k8s.io/v1 by its apiVersion; `Conflict` when one of its
        name exists (AlreadyExists)."""
        core = event.get("apiVersion", "v1") == "v1"
        path = events_path(namespace) if core else series_events_path(namespace)
        self.request("POST", path, body=event)

    def patch_event(self, namespace: str, name: str, patch: Manifest) -> None:
        """Merge `patch` into an events.k8s.io/v1 Event (its `series`: all else is immutable)."""
        path = series_events_path(namespace, name)
        self.request("PATCH", path, body=patch, content_type=MERGE)

    def events_of(self, namespace: str, uid: str) -> list[Manifest]:
        """The Events about one object, in the core/v1 shape. One posted through events.k8s.io/v1
        keeps its time and count only in `eventTime` and `series`: they are copied into
        `lastTimestamp` and `count`, so every reader sees one shape."""
        items = self.items(events_path(namespace), fieldSelector=f"involvedObject.uid={uid}")
        for event in items:
            series = event.get("series") or {}
            last = event.get("lastTimestamp") or series.get("lastObservedTime") or event.get("eventTime")
            event["lastTimestamp"] = last
            event["count"] = event.get("count") or series.get("count") or 1
        return items

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's decoded data; LookupError when there is none."""
        found = self.get(secret_path(namespace, name))
        if found is None:
            raise LookupError("not found")
        return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}
