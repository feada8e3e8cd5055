"""The watch cache a pass reads from (`kube.cache`) and the resync passes left out while nothing
it reads changed (`kube.skips`, `Reconciler.step(resync=True)`)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiClient

from modelship.core import manifests
from modelship.kube import cache, skips
from modelship.kube.reconciler import Reconciler
from modelship.kube.storage import Storage, deployments_path, md_path, service_path
from modelship.logs import object_logger

pytestmark = pytest.mark.unit

LOG = object_logger("ns", "fraud")
MD = md_path("ns", "fraud")
DEPLOYMENTS = deployments_path("ns")
DEPLOYMENT = deployments_path("ns", "fraud-abc")
SERVICE = service_path("ns", "fraud")


def obj(name: str, version: str, model: str | None = "fraud", **extra: Any) -> dict[str, Any]:
    labels = {manifests.MODEL_LABEL: model} if model else {}
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": version, "labels": labels},
        **extra,
    }


def ready_cache() -> cache.Cache:
    found = cache.Cache(manifests.MODEL_LABEL)
    found.ready()
    return found


def test_before_the_initial_listing_is_in_the_cache_sends_every_read_to_the_api() -> None:
    found = cache.Cache(manifests.MODEL_LABEL)
    found.saw(MD, obj("fraud", "5", model=None))
    assert found.get(MD) == (False, None)
    assert found.items(DEPLOYMENTS, "fraud") is None
    found.ready()
    assert found.get(MD) == (True, obj("fraud", "5", model=None))
    assert found.get(md_path("ns", "other")) == (True, None), "listed, and not there: there is none"


def test_an_older_event_never_replaces_a_newer_object() -> None:
    found = ready_cache()
    found.saw(DEPLOYMENT, obj("fraud-abc", "12", spec={"replicas": 2}))
    found.saw(DEPLOYMENT, obj("fraud-abc", "9", spec={"replicas": 1}))  # delivered late
    assert found.items(DEPLOYMENTS, "fraud") == [obj("fraud-abc", "12", spec={"replicas": 2})]
    found.gone(DEPLOYMENT, obj("fraud-abc", "10"))  # the deletion of an older incarnation
    assert [o["metadata"]["resourceVersion"] for o in found.items(DEPLOYMENTS, "fraud") or []] == ["12"]
    found.saw(DEPLOYMENT, obj("fraud-abc", "13"))
    found.gone(DEPLOYMENT, obj("fraud-abc", "14"))
    assert found.items(DEPLOYMENTS, "fraud") == []


def test_children_are_grouped_by_the_model_they_belong_to() -> None:
    found = ready_cache()
    found.saw(DEPLOYMENT, obj("fraud-abc", "3"))
    found.saw(deployments_path("ns", "spam-abc"), obj("spam-abc", "4", model="spam"))
    found.saw(deployments_path("other", "fraud-abc"), {**obj("fraud-abc", "5"), "kind": "elsewhere"})
    assert [o["metadata"]["name"] for o in found.items(DEPLOYMENTS, "fraud") or []] == ["fraud-abc"]
    assert found.items(DEPLOYMENTS, "nobody") == []


def test_after_its_own_write_the_operator_reads_the_api_until_the_watch_shows_the_write() -> None:
    found = ready_cache()
    found.saw(MD, obj("fraud", "20", model=None))
    found.wrote(MD, "fraud", "22")  # a status patch the watch has not delivered yet
    assert found.get(MD) == (False, None)
    found.saw(MD, obj("fraud", "21", model=None))  # someone else's change, before ours
    assert found.get(MD) == (False, None)
    found.saw(MD, obj("fraud", "22", model=None))
    assert found.get(MD) == (True, obj("fraud", "22", model=None))


def test_a_created_or_deleted_child_is_listed_from_the_api_until_the_watch_shows_it() -> None:
    found = ready_cache()
    found.wrote(DEPLOYMENT, "fraud", "30")  # created by an apply
    assert found.items(DEPLOYMENTS, "fraud") is None
    found.saw(DEPLOYMENT, obj("fraud-abc", "30"))
    assert found.items(DEPLOYMENTS, "fraud") == [obj("fraud-abc", "30")]
    found.wrote(DEPLOYMENT, "fraud", None)  # deleted
    assert found.items(DEPLOYMENTS, "fraud") is None
    found.gone(DEPLOYMENT, obj("fraud-abc", "31"))
    assert found.items(DEPLOYMENTS, "fraud") == []


def test_another_model_s_write_in_flight_does_not_send_this_model_s_reads_to_the_api() -> None:
    found = ready_cache()
    found.saw(DEPLOYMENT, obj("fraud-abc", "3"))
    found.wrote(deployments_path("ns", "spam-abc"), "spam", "4")
    assert found.items(DEPLOYMENTS, "fraud") == [obj("fraud-abc", "3")]
    assert found.items(DEPLOYMENTS, "spam") is None


def test_a_version_that_is_not_a_number_is_never_trusted_over_the_api() -> None:
    found = ready_cache()
    found.saw(SERVICE, obj("fraud", "abc"))
    found.wrote(SERVICE, "fraud", "abd")
    assert found.items(service_path("ns"), "fraud") is None
    assert found.versions((service_path("ns"),), "fraud") is None


def test_a_handed_out_object_is_a_copy() -> None:
    found = ready_cache()
    found.saw(MD, obj("fraud", "1", model=None, status={"phase": "Healthy"}))
    _, body = found.get(MD)
    assert body is not None
    body["status"]["phase"] = "Changed"
    assert found.get(MD)[1] == obj("fraud", "1", model=None, status={"phase": "Healthy"})


def test_the_digest_ignores_order_and_sees_any_version_change() -> None:
    one = skips.digest([(MD, 1), (DEPLOYMENT, 2)])
    assert one == skips.digest([(DEPLOYMENT, 2), (MD, 1)])
    assert one != skips.digest([(MD, 1), (DEPLOYMENT, 3)])
    assert one != skips.digest([(MD, 1)])  # a child gone
    assert one != skips.digest([(MD, 1), (DEPLOYMENT, 2), (SERVICE, 4)])  # a child more


def test_skips_need_the_same_inputs_and_leave_every_nth_resync_whole() -> None:
    found = skips.Skips(full_every=3)
    key = next(k for k in (f"k{i}" for i in range(100)) if skips.phase(k, 3) == 0)
    assert not found.skip(key, "d1"), "no pass recorded yet"  # resync 1
    found.passed(key, "d1")
    assert found.skip(key, "d1")  # 2
    assert not found.skip(key, "d1"), "the third resync runs whole"
    found.passed(key, "d1")
    assert found.skip(key, "d1")  # 4
    assert found.skip(key, "d1")  # 5
    assert not found.skip(key, "d1"), "and the sixth: every third, not every third after a pass"
    found.passed(key, "d1")
    assert not found.skip(key, "d2"), "other inputs"
    found.passed(key, None)  # a pass that read more than the watch shows
    assert not found.skip(key, "d1")
    found.passed(key, "d1")
    found.running(key)  # a pass that has not ended (or failed)
    assert not found.skip(key, "d1")


def test_steady_objects_run_one_whole_resync_pass_in_n_spread_over_the_resyncs() -> None:
    found, keys = skips.Skips(full_every=10), [("scale", f"md-{i:05d}") for i in range(1000)]
    for key in keys:
        found.passed(key, "d")
    whole = [sum(1 for key in keys if not found.skip(key, "d")) for _ in range(30)]
    assert sum(whole) == 3 * len(keys), "each object: three whole passes in thirty resyncs"
    assert max(whole) <= 150, f"about a tenth at each resync, not all on the same one: {whole}"


class Reads(Storage):
    """Records the GETs a pass sends to the API (of the ModelDeployment: there at version 9)."""

    def __init__(self) -> None:
        super().__init__(ApiClient())
        self.got: list[str] = []

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        self.got.append(path)
        return obj("fraud", "9", model=None)


class PassCounter(Reconciler):
    """A Reconciler whose pass is counted (and reports `wake`), its reads only from the cache."""

    def __init__(self) -> None:
        self.reads = Reads()
        super().__init__(self.reads)
        self.passes = 0
        self.wake: float | None = None
        self.cache.ready()
        self.cache.saw(MD, obj("fraud", "1", model=None))
        self.cache.saw(DEPLOYMENT, obj("fraud-abc", "2"))

    def _pass(self, body: dict[str, Any], logger: Any, cached: bool) -> tuple[float | None, bool]:
        self.passes += 1
        return self.wake, True


def test_a_resync_pass_is_left_out_while_nothing_the_last_pass_read_changed() -> None:
    reconciler = PassCounter()
    reconciler.step("ns", "fraud", LOG, resync=True)
    reconciler.step("ns", "fraud", LOG, resync=True)
    assert reconciler.passes == 1
    reconciler.step("ns", "fraud", LOG)  # a watch event: always whole
    assert reconciler.passes == 2
    reconciler.cache.saw(DEPLOYMENT, obj("fraud-abc", "3"))  # its Deployment moved
    reconciler.step("ns", "fraud", LOG, resync=True)
    assert reconciler.passes == 3
    reconciler.cache.saw(SERVICE, obj("fraud", "4"))  # a Service appeared
    reconciler.step("ns", "fraud", LOG, resync=True)
    assert reconciler.passes == 4
    reconciler.step("ns", "fraud", LOG, resync=True)
    assert reconciler.passes == 4


def test_a_resync_pass_runs_while_a_timer_is_due_and_reads_the_api_when_it_runs() -> None:
    reconciler = PassCounter()
    reconciler.wake = 5.0
    reconciler.step("ns", "fraud", LOG, resync=True)
    reconciler.step("ns", "fraud", LOG, resync=True)
    assert reconciler.passes == 2
    assert reconciler.reads.got == [MD, MD], "the safety net does not trust the watch"


def test_a_pass_after_the_operator_s_own_write_reads_the_api_until_the_watch_shows_it() -> None:
    reconciler = PassCounter()
    reconciler.step("ns", "fraud", LOG)
    assert reconciler.reads.got == []
    reconciler.cache.wrote(MD, "fraud", "9")  # its status patch, not delivered yet
    reconciler.cache.saw(MD, obj("fraud", "8", model=None))
    reconciler.step("ns", "fraud", LOG)
    assert reconciler.reads.got == [MD], "read from the API, not the cache's older version"
    reconciler.cache.saw(MD, obj("fraud", "9", model=None))
    reconciler.step("ns", "fraud", LOG)
    assert reconciler.reads.got == [MD]
    assert reconciler.passes == 3


def test_a_child_found_gone_by_its_deletion_leaves_the_cache_at_once() -> None:
    found = ready_cache()
    found.saw(DEPLOYMENT, obj("fraud-abc", "3"))
    found.drop(DEPLOYMENT)  # the watch missed its deletion; a DELETE answered 404
    assert found.items(DEPLOYMENTS, "fraud") == []
