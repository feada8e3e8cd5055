"""The transport: credentials, TLS and one JSON-over-REST call, through the kubernetes client.

The generated typed clients convert to and from model classes; the operator works with plain
manifests (dicts), so it speaks the REST paths directly and keeps only the client's
configuration, authentication and TLS handling. What the paths are, which content type a patch
has and what an HTTP status means is `modelship.kube.storage`'s business, not this module's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from kubernetes import client, config
from urllib3 import HTTPHeaderDict


def load_api_client(connections: int | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config.
    `connections`: the most requests in flight at once (the pool keeps that many connections open;
    the client's default is 5 per CPU, fewer than the operator's threads on a small node)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def call(
    api: client.ApiClient,
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: Any = None,
    content_type: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> tuple[int, Any]:
    """One request; the HTTP status and the decoded JSON answer (`{}` when empty), whatever the status.
    `extra_headers` may repeat a name (one Impersonate-Group header per group): sent as given."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    params = api.param_serialize(
        method,
        path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*_with(params, extra_headers))
    raw = response.read()  # type: ignore[no-untyped-call]
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = raw.decode("utf-8", "replace")
    return response.status, data


def stream(
    api: client.ApiClient,
    path: str,
    query: dict[str, str],
    read_timeout: float,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> tuple[int, Iterator[bytes]]:
    """A GET whose answer is read line by line as it arrives (a watch): the HTTP status and the lines.
    `read_timeout` bounds the wait for the next bytes, not the whole answer."""
    params = api.param_serialize(
        "GET",
        path,
        query_params=list(query.items()),
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*_with(params, extra_headers), _request_timeout=(10.0, read_timeout))
    raw = response.response  # urllib3's answer, not read yet (the client never preloads)

    def lines() -> Iterator[bytes]:
        pending = b""
        try:
            for chunk in raw.stream(amt=65536, decode_content=True):
                pending += chunk
                *done, pending = pending.split(b"\n")
                yield from (line for line in done if line.strip())
            if pending.strip():
                yield pending
        finally:
            raw.release_conn()

    return response.status, lines()


def _with(params: Any, extra_headers: Sequence[tuple[str, str]]) -> tuple[str, str, Any, Any, Any]:
    """`param_serialize`'s request with `extra_headers` added: the client's own header dict holds one
    value a name, urllib3's holds many (one Impersonate-Group header per group)."""
    method, url, serialized, body, post = params
    if not extra_headers:
        return method, url, serialized, body, post
    sent = HTTPHeaderDict(serialized)
    for name, value in extra_headers:
        sent.add(name, value)
    return method, url, sent, body, post
