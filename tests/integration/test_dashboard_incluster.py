"""The dashboard's in-cluster mode against the real API server, as the chart installs it: the chart
(`dashboard.enabled`) makes the dashboard's ServiceAccount and RBAC, and the dashboard runs as a
local process with a kubeconfig holding only that account's token, behind a stand-in for the auth
proxy (these requests, with its headers). Read-only, an action is refused naming the chart value;
with `dashboard.actions.enabled`, a user bound only to `view` gets the SubjectAccessReview's
refusal, a user whose group is bound to `edit` promotes, and the API server sees that user
(impersonation), not the dashboard's account, which may not patch a status at all."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from playwright.sync_api import Browser, expect

from devcluster.cluster import ExistingCluster
from modelship.kube.storage import Storage, md_path
from modelship.plugin.dashboard import guard

from .mdhelpers import create_md, kube, wait_until
from .test_chart import can, chart_crds, install, release, sa_user
from .test_chart_rbac_sufficient import service_account_kubeconfig
from .test_dashboard import CANARY_AT_20, NAME, browser, manifest, write_status

__all__ = ["browser", "chart_crds", "kube", "release"]  # fixtures used by this module
pytestmark = pytest.mark.integration

HOST = "modelship.example.com"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


class Dashboard:
    """The in-cluster dashboard as a process, asked as the auth proxy would ask it."""

    def __init__(self, port: int, host: str) -> None:
        self.port = port
        self.host = host  # the public host it serves

    def ask(
        self, method: str, path: str, user: str, groups: str = "", body: Any = None, **headers: str
    ) -> tuple[int, str]:
        """One request as `user` in `groups`: the page first (as a browser would), for its token."""
        person = {"Host": self.host, "X-Forwarded-User": user, "X-Forwarded-Groups": groups}
        if method == "GET" and path == "/":
            return self.send("GET", "/", {**person, **headers}, None)
        _, page = self.send("GET", "/", person, None)
        found = re.search(r'name="modelship-token" content="([^"]*)"', page)
        assert found, page
        return self.send(method, path, {**person, guard.TOKEN_HEADER: found[1], **headers}, body)

    def send(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.putrequest(method, path, skip_host=True)
        data = json.dumps(body).encode() if body is not None else b""
        for k, v in {**headers, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
            if v:
                conn.putheader(k.replace("_", "-"), v)
        conn.endheaders(data)
        answer = conn.getresponse()
        text = answer.read().decode()
        conn.close()
        return answer.status, text


@pytest.fixture
def in_cluster(
    cluster: ExistingCluster,
    api_client: client.ApiClient,
    namespace: str,
    release: str,
    chart_crds: None,
    tmp_path: Path,
) -> Iterator[Callable[..., Dashboard]]:
    """`helm install` with the dashboard (the values given), then `modelship dashboard --in-cluster`
    as the chart's Deployment runs it, with the chart's dashboard ServiceAccount's token."""
    procs: list[subprocess.Popen[str]] = []

    def started(*values: str, actions: bool = False, public: str = HOST, port: int = 0) -> Dashboard:
        install(
            cluster,
            release,
            namespace,
            "--set",
            "dashboard.enabled=true",
            "--set",
            f"dashboard.publicHosts={{{HOST}}}",
            "--set",
            "dashboard.identity.userHeader=X-Forwarded-User",
            "--set",
            "dashboard.identity.groupsHeader=X-Forwarded-Groups",
            *values,
        )
        account = f"{release}-modelship-dashboard"
        config = service_account_kubeconfig(cluster, namespace, account, tmp_path / "dashboard.kubeconfig")
        reader = sa_user(namespace, account)
        wait_until(
            "the chart's binding lets the dashboard list ModelDeployments everywhere",
            lambda: can(api_client, reader, "list", "modeldeployments", "modelship.io"),
            timeout=30,
        )
        command = [
            str(Path(sys.executable).parent / "modelship"),
            "dashboard",
            "--in-cluster",
            "--listen",
            f"127.0.0.1:{port}",
            "--public-host",
            public,
            "--user-header",
            "X-Forwarded-User",
            "--groups-header",
            "X-Forwarded-Groups",
            *(["--actions"] if actions else []),
            "--kubeconfig",
            str(config),
        ]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+) for " + re.escape(public), first)
        assert found, (first, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        return Dashboard(int(found[1]), public)

    try:
        yield started
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def bind(kube: Storage, namespace: str, name: str, role: str, kind: str, subject: str) -> None:
    """A RoleBinding of the built-in ClusterRole `role` to a User or Group."""
    kube.create(
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
        },
    )


def listed(dashboard: Dashboard) -> list[str]:
    code, text = dashboard.ask("GET", "/api/list", "viv")
    return [row["name"] for row in json.loads(text)["rows"]] if code == 200 else []


def test_read_only_an_action_is_refused_naming_the_chart_value_and_the_page_has_no_buttons(
    in_cluster: Callable[..., Dashboard],
    kube: Storage,
    namespace: str,
    api_client: client.ApiClient,
    release: str,
) -> None:
    dashboard = in_cluster()
    create_md(kube, namespace, manifest())
    write_status(kube, namespace, CANARY_AT_20)
    # It reads with its own account: anyone the proxy let in sees the list.
    wait_until("the dashboard lists the canary", lambda: NAME in listed(dashboard), timeout=20)
    code, page = dashboard.ask("GET", "/", "viv")
    assert code == 200 and '<meta name="modelship-actions" content="off">' in page
    code, text = dashboard.ask("POST", f"/api/md/{namespace}/{NAME}/promote", "viv", body={})
    assert code == 403 and "dashboard.actions.enabled=true" in json.loads(text)["message"], text
    assert (kube.get(md_path(namespace, NAME)) or {})["status"]["rollout"]["canary"]["step"] == 1
    # Read-only, the chart gives its account no way to act as anyone.
    account = sa_user(namespace, f"{release}-modelship-dashboard")
    assert not can(api_client, account, "impersonate", "users")
    assert not can(api_client, account, "create", "subjectaccessreviews", "authorization.k8s.io")


def test_with_actions_a_view_user_is_refused_by_the_review_and_an_edit_user_promotes_as_themself(
    in_cluster: Callable[..., Dashboard],
    kube: Storage,
    namespace: str,
    api_client: client.ApiClient,
    release: str,
) -> None:
    dashboard = in_cluster("--set", "dashboard.actions.enabled=true", actions=True)
    bind(kube, namespace, "viv-views", "view", "User", "viv")
    bind(kube, namespace, "ml-team-edits", "edit", "Group", "ml-team")
    create_md(kube, namespace, manifest())
    write_status(kube, namespace, CANARY_AT_20)
    wait_until("the dashboard lists the canary", lambda: NAME in listed(dashboard), timeout=20)
    promote = f"/api/md/{namespace}/{NAME}/promote"

    code, page = dashboard.ask("GET", "/", "eddie", "ml-team,qa")
    assert '<meta name="modelship-actions" content="on">' in page
    assert '<meta name="modelship-user" content="eddie">' in page

    code, text = dashboard.ask("POST", promote, "viv", body={})
    assert code == 403, text
    assert json.loads(text)["message"].startswith(
        f'User "viv" cannot patch resource "modeldeployments/status" in API group "modelship.io" '
        f'in the namespace "{namespace}"'
    ), text
    assert (kube.get(md_path(namespace, NAME)) or {})["status"]["rollout"]["canary"]["step"] == 1

    # Not through the proxy (no user header), or from another site: refused before any review.
    code, text = dashboard.send("POST", promote, {"Host": HOST}, {})
    assert code == 403 and "no X-Forwarded-User header" in text
    code, text = dashboard.ask("POST", promote, "eddie", "ml-team", body={}, Origin="https://evil.example")
    assert code == 403 and "Origin" in text

    # The aggregated edit role (the chart's userRoles) may take a moment to include ModelDeployments.
    wait_until(
        "edit includes modeldeployments/status",
        lambda: can(
            api_client,
            ("eddie", ["ml-team"]),
            "patch",
            "modeldeployments",
            "modelship.io",
            namespace,
            "status",
        ),
        timeout=30,
    )
    code, text = dashboard.ask("POST", promote, "eddie", "ml-team,qa", body={})
    assert code == 200 and "promoted" in json.loads(text)["message"], text
    assert (kube.get(md_path(namespace, NAME)) or {})["status"]["rollout"]["canary"]["step"] == 2
    # The write was eddie's: the dashboard's own account may not patch a status, only act as people.
    account = sa_user(namespace, f"{release}-modelship-dashboard")
    assert not can(api_client, account, "patch", "modeldeployments", "modelship.io", namespace, "status")
    assert can(api_client, account, "impersonate", "users")


def test_the_api_server_sees_the_impersonated_user_and_every_group(
    cluster: ExistingCluster, namespace: str, release: str, chart_crds: None, tmp_path: Path
) -> None:
    install(
        cluster,
        release,
        namespace,
        *("--set", "dashboard.enabled=true", "--set", f"dashboard.publicHosts={{{HOST}}}"),
        *("--set", "dashboard.actions.enabled=true", "--set", "dashboard.identity.userHeader=X-User"),
    )
    account = f"{release}-modelship-dashboard"
    path = service_account_kubeconfig(cluster, namespace, account, tmp_path / "dashboard.kubeconfig")
    from kubernetes import config

    loaded = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=loaded)  # type: ignore[no-untyped-call]
    dashboard = Storage(client.ApiClient(loaded))
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    seen = dashboard.impersonating("eddie", ("ml-team", "qa")).create(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews", review
    )["status"]["userInfo"]
    assert seen["username"] == "eddie"
    assert {"ml-team", "qa"} <= set(seen["groups"]), seen
    itself = dashboard.create("/apis/authentication.k8s.io/v1/selfsubjectreviews", review)["status"]
    assert itself["userInfo"]["username"] == f"system:serviceaccount:{namespace}:{account}"


def test_in_a_browser_the_read_only_page_names_the_user_and_has_no_buttons(
    in_cluster: Callable[..., Dashboard], kube: Storage, namespace: str, browser: Browser
) -> None:
    with socket.socket() as probe:  # the address the browser opens is the public host here
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dashboard = in_cluster(public=f"127.0.0.1:{port}", port=port)
    create_md(kube, namespace, manifest())
    write_status(kube, namespace, CANARY_AT_20)
    wait_until("the dashboard lists the canary", lambda: NAME in listed(dashboard), timeout=20)
    context = browser.new_context(extra_http_headers={"X-Forwarded-User": "viv"})  # as the proxy
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"http://127.0.0.1:{port}/#/md/{namespace}/{NAME}")
        expect(page.locator("#user")).to_have_text("signed in as viv")
        expect(page.locator("#read-only")).to_contain_text("dashboard.actions.enabled")
        expect(page.locator("#phase")).to_have_text("Progressing")  # the page is drawn
        assert page.locator("button[data-verb]").count() == 0
        assert errors == []
    finally:
        context.close()
