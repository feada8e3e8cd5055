"""A small JSON-over-REST wrapper around the kubernetes client's transport.

The generated typed clients convert to and from model classes; the operator works
with plain manifests (dicts), so it speaks the REST paths directly and keeps the
client's configuration, authentication and TLS handling.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config

APPLY = "application/apply-patch+yaml"  # server-side apply; a JSON body is valid YAML
FIELD_MANAGER = "modelship"


class KubeError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api = api_client

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*params)
        raw = response.read()  # type: ignore[no-untyped-call]
        data = json.loads(raw) if raw else {}
        if not 200 <= response.status < 300:
            raise KubeError(response.status, data)
        result: dict[str, Any] = data
        return result

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path, query=query)
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def apply(self, path: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as `modelship`, taking over fields others changed (drift is reverted)."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        return self.request("PATCH", path, query=query, body=manifest, content_type=APPLY)

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path, body={"propagationPolicy": "Background"})
        except KubeError as err:
            if err.status != 404:
                raise
