"""The transport: credentials, TLS and one JSON-over-REST call, through the kubernetes client.

The generated typed clients convert to and from model classes; the operator works with plain
manifests (dicts), so it speaks the REST paths directly and keeps only the client's
configuration, authentication and TLS handling. What the paths are, which content type a patch
has and what an HTTP status means is `modelship.kube.storage`'s business, not this module's.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def call(
    api: client.ApiClient,
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: Any = None,
    content_type: str | None = None,
) -> tuple[int, Any]:
    """One request; the HTTP status and the decoded JSON answer (`{}` when empty), whatever the status."""
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
    response = api.call_api(*params)
    raw = response.read()  # type: ignore[no-untyped-call]
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = raw.decode("utf-8", "replace")
    return response.status, data
