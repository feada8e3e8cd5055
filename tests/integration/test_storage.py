"""The storage layer against the real API server: error answers mapped to types, the
resourceVersion-guarded ModelDeployment write, and crash injection's count of writes."""

from __future__ import annotations

import copy

import pytest
from kubernetes import client

from modelship.kube.storage import (
    Conflict,
    Invalid,
    NotFound,
    SimulatedCrash,
    Storage,
    md_path,
    object_path,
    service_path,
)

from .mdhelpers import crd_installed, create_md, example, kube

__all__ = ["crd_installed", "kube"]
pytestmark = pytest.mark.integration


def service(namespace: str, name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def test_error_answers_are_typed_and_get_turns_not_found_into_none(kube: Storage, namespace: str) -> None:
    missing = service_path(namespace, "missing")
    assert kube.get(missing) is None
    with pytest.raises(NotFound):
        kube.request("GET", missing)
    assert kube.delete(missing) is False
    kube.apply(service(namespace, "one"))
    with pytest.raises(Conflict):
        kube.create(f"/api/v1/namespaces/{namespace}/services", service(namespace, "one"))
    bad = service(namespace, "two")
    bad["spec"] = {"ports": [{"port": 70000}]}
    with pytest.raises(Invalid):
        kube.apply(bad)


def test_the_guarded_write_returns_the_new_version_or_none_on_a_conflict(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    doc = copy.deepcopy(example("basic.yaml"))
    created = create_md(kube, namespace, doc)
    name, version = doc["metadata"]["name"], created["metadata"]["resourceVersion"]
    written = kube.patch_md(namespace, name, "status", {"phase": "Pending"}, version)
    assert written is not None and written != version
    assert (kube.get(md_path(namespace, name)) or {})["status"]["phase"] == "Pending"
    # Decided on the old version: refused, nothing written.
    assert kube.patch_md(namespace, name, "status", {"phase": "Healthy"}, version) is None
    assert (kube.get(md_path(namespace, name)) or {})["status"]["phase"] == "Pending"
    # A merge patch removes what the new status no longer has.
    assert kube.patch_md(namespace, name, "status", {"phase": None}, written) is not None
    assert "phase" not in ((kube.get(md_path(namespace, name)) or {}).get("status") or {})


def test_crash_after_k_performs_k_writes_then_stops_and_an_event_is_a_write(
    api_client: client.ApiClient, kube: Storage, namespace: str
) -> None:
    crashing = Storage(api_client, crash_after=3)
    event = {
        "metadata": {"name": "first.1", "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Service", "name": "first", "namespace": namespace},
        "reason": "Test",
        "message": "a counted write: the next pass must know whether it was posted",
    }
    crashing.post_event(namespace, event)
    with pytest.raises(Conflict):  # AlreadyExists: refused, so not a write
        crashing.post_event(namespace, event)
    crashing.apply(service(namespace, "first"))
    assert crashing.writes == 2
    assert crashing.get(service_path(namespace, "first")) is not None  # reads do not count
    with pytest.raises(SimulatedCrash):
        crashing.apply(service(namespace, "second"))  # the 3rd write happens, then the "crash"
    assert crashing.writes == 3 and crashing.crashed
    assert kube.get(object_path(service(namespace, "second"))) is not None
    with pytest.raises(SimulatedCrash):  # a dead operator writes nothing more
        crashing.apply(service(namespace, "third"))
    assert kube.get(object_path(service(namespace, "third"))) is None


def test_keys_reads_a_list_a_page_at_a_time_and_misses_nothing(kube: Storage, namespace: str) -> None:
    names = [f"page-{i}" for i in range(5)]
    for name in names:
        kube.apply(service(namespace, name))
    collection = f"/api/v1/namespaces/{namespace}/services"
    pages: list[str] = []
    request = kube.request

    def counted(method: str, path: str, **kwargs: object) -> object:
        pages.append(path)
        return request(method, path, **kwargs)  # type: ignore[arg-type]

    kube.request = counted  # type: ignore[method-assign]
    try:
        keys = kube.keys(collection, page=2)
    finally:
        del kube.request
    assert sorted(keys) == [(namespace, name) for name in names]
    assert len(pages) == 3, "five items two at a time: three pages"
