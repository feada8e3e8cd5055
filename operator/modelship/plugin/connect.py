"""Which cluster and namespace: kubectl's rules for --kubeconfig, $KUBECONFIG, --context and -n."""

from __future__ import annotations

import os
from pathlib import Path

from modelship.kube.storage import Storage

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ConnectError(Exception):
    """The kubeconfig or the context asked for cannot be used (the message names the flag)."""


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> tuple[Storage, str]:
    """The cluster's Storage and the namespace to work in: `-n`, else the context's namespace, else
    `default`. Without a kubeconfig (no flag, no $KUBECONFIG, no ~/.kube/config) inside a pod: the
    pod's service account and namespace."""
    from kubernetes import config

    source = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if kubeconfig is None and context is None and not _any_exists(source) and _in_cluster():
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        from kubernetes import client

        return Storage(client.ApiClient()), namespace or _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    if kubeconfig is not None and not Path(kubeconfig).is_file():
        raise ConnectError(f"--kubeconfig: no such file: {kubeconfig}")
    if not _any_exists(source):
        raise ConnectError(f"no kubeconfig at {source}: pass --kubeconfig or set $KUBECONFIG")
    try:
        contexts, current = config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
    except config.ConfigException as err:
        raise ConnectError(f"kubeconfig {source}: {err}") from None
    if context is not None and context not in {c["name"] for c in contexts}:
        raise ConnectError(f'--context: no context "{context}" in the kubeconfig ({source})')
    try:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    except config.ConfigException as err:
        raise ConnectError(f"kubeconfig {source}: {err}") from None
    chosen = next((c for c in contexts if c["name"] == context), None) if context else current
    return Storage(api_client), namespace or (chosen or {}).get("context", {}).get("namespace") or "default"


def _any_exists(paths: str) -> bool:
    return any(Path(p).is_file() for p in paths.split(os.pathsep) if p)


def _in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ and _SERVICE_ACCOUNT_NAMESPACE.is_file()
