"""The whole local world on a running cluster: catalogue, pod runner, Prometheus, routers.

What the e2e fixture and the demo start on top of the local control plane, and stop in
reverse order (routers, Prometheus, then the pod runner, which ends every server process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from localworld.catalogue import Catalogue, build_samples
from localworld.demomodels import build_demo
from localworld.podrunner import PodRunner
from localworld.prometheus import DEFAULT_INTERVAL, Prometheus
from localworld.router import Router


@dataclass
class LocalWorld:
    api: client.ApiClient
    state_dir: Path
    scrape_interval: str = DEFAULT_INTERVAL
    demo_models: bool = False  # also catalogue v1, v2, v3-inaccurate (localworld.demomodels)
    _catalogue: Catalogue | None = None
    _runner: PodRunner | None = None
    _prometheus: Prometheus | None = None
    routers: list[Router] = field(default_factory=list)

    @property
    def catalogue(self) -> Catalogue:
        assert self._catalogue is not None, "LocalWorld.start() first"
        return self._catalogue

    @property
    def pod_runner(self) -> PodRunner:
        assert self._runner is not None, "LocalWorld.start() first"
        return self._runner

    @property
    def prometheus(self) -> Prometheus:
        assert self._prometheus is not None, "LocalWorld.start() first"
        return self._prometheus

    def start(self) -> None:
        try:
            self._catalogue = build_samples(self.state_dir / "images")
            if self.demo_models:
                build_demo(self.state_dir / "images")
            self._runner = PodRunner(self.api, self._catalogue, log_dir=self.state_dir / "pods")
            self._runner.start()
            # Raises PrometheusMissing (with the install command) when the package is absent.
            self._prometheus = Prometheus(
                self.api, self.state_dir / "prometheus", interval=self.scrape_interval
            )
            self._prometheus.start()
        except BaseException:
            self.stop()
            raise

    def router(self, namespace: str, name: str) -> Router:
        """A started router for the HTTPRoute or Service `name`; stopped with the world (or by you)."""
        router = Router(self.api, namespace, name)
        router.start()
        self.routers.append(router)
        return router

    def stop(self) -> None:
        for router in self.routers:
            router.stop()
        self.routers.clear()
        if self._prometheus is not None:
            self._prometheus.stop()
        if self._runner is not None:
            self._runner.stop()

    def __enter__(self) -> LocalWorld:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
