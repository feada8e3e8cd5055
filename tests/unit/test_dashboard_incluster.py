"""The dashboard's in-cluster mode, pure and over HTTP without a cluster: the identity the auth proxy
names, the guard with the configured public hosts, the action gate (read-only unless
dashboard.actions.enabled), the SubjectAccessReview asked and its refusal, and the flags. Against the
real API server (impersonation, RBAC): tests/integration/test_dashboard_incluster.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from kubernetes import client
from multidict import CIMultiDict, CIMultiDictProxy

from modelship import plugin
from modelship.kube.storage import Storage
from modelship.plugin import args
from modelship.plugin.dashboard import guard, incluster, mode_of, server
from modelship.plugin.dashboard.incluster import Identity, InCluster

pytestmark = pytest.mark.unit

HOST = "dash.example.com"
MODE = InCluster(
    hosts=(HOST,), actions=True, user_header="X-Forwarded-User", groups_header="X-Forwarded-Groups"
)


# ---- who the proxy names ----------------------------------------------------------------------


def test_the_identity_is_the_proxys_user_and_comma_separated_groups() -> None:
    headers = {"X-Forwarded-User": " alice@example.com ", "X-Forwarded-Groups": "ml-team, sre,,ml-team"}
    assert incluster.identity(headers, MODE) == Identity("alice@example.com", ("ml-team", "sre"))
    assert incluster.identity({"X-Forwarded-User": "bob"}, MODE) == Identity("bob", ())


def test_groups_may_come_one_header_each_as_oauth2_proxy_sends_them() -> None:
    headers = CIMultiDict([("X-Forwarded-User", "alice"), ("x-forwarded-groups", "ml-team")])
    headers.add("X-Forwarded-Groups", "sre,qa")
    assert incluster.identity(CIMultiDictProxy(headers), MODE) == Identity("alice", ("ml-team", "sre", "qa"))


def test_two_user_headers_name_nobody() -> None:
    headers = CIMultiDict([("X-Forwarded-User", "mallory"), ("X-Forwarded-User", "alice")])
    why = incluster.identity(CIMultiDictProxy(headers), MODE)
    assert isinstance(why, str) and "more than one X-Forwarded-User header" in why


def test_prefixes_name_the_person_as_the_api_servers_oidc_does() -> None:
    mode = InCluster(
        hosts=(HOST,),
        user_header="X-Auth-Request-User",
        groups_header="X-Auth-Request-Groups",
        user_prefix="oidc:",
        groups_prefix="oidc:",
    )
    headers = {"X-Auth-Request-User": "alice", "X-Auth-Request-Groups": "ml-team"}
    assert incluster.identity(headers, mode) == Identity("oidc:alice", ("oidc:ml-team",))


def test_groups_are_read_only_from_a_configured_header() -> None:
    mode = InCluster(hosts=(HOST,), user_header="X-Forwarded-User")
    headers = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "system:masters"}
    assert incluster.identity(headers, mode) == Identity("alice", ())


def test_no_user_header_is_a_refusal_naming_it() -> None:
    why = incluster.identity({"X-Forwarded-Groups": "ml-team"}, MODE)
    assert isinstance(why, str) and "no X-Forwarded-User header" in why and "auth proxy" in why


def test_an_untrusted_header_names_nobody() -> None:
    mode = InCluster(hosts=(HOST,))  # no userHeader: the header is not trusted, whatever it says
    why = incluster.identity({"X-Forwarded-User": "alice"}, mode)
    assert isinstance(why, str) and "trusts no header" in why


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-User": "system:serviceaccount:kube-system:admin"},
        {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "ml-team,system:masters"},
    ],
)
def test_kubernetes_own_names_are_refused(headers: dict[str, str]) -> None:
    why = incluster.identity(headers, MODE)
    assert isinstance(why, str) and "reserved for Kubernetes" in why and "system:" in why


# ---- the guard with the configured hosts --------------------------------------------------------

SITE = guard.public([HOST])
TOKEN = "per-person-token"


def refusal(path: str, headers: dict[str, str], query: dict[str, str] | None = None) -> str | None:
    return guard.refusal(path, headers, query or {}, {}, SITE, TOKEN)


def test_the_public_host_is_served_and_its_page_needs_no_token() -> None:
    assert refusal("/", {"Host": HOST}) is None  # the proxy let the person in: the page hands the token
    assert refusal("/api/list", {"Host": HOST, guard.TOKEN_HEADER: TOKEN}) is None
    assert refusal("/api/stream", {"Host": HOST, "Origin": f"https://{HOST}"}, {"token": TOKEN}) is None


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1:8080", "10.0.0.7:8080", f"{HOST}:9999", ""])
def test_any_other_host_is_refused(host: str) -> None:
    why = refusal("/api/list", {"Host": host, guard.TOKEN_HEADER: TOKEN})
    assert why is not None and "Host" in why and HOST in why


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:8080", "null"])
def test_a_foreign_origin_is_refused(origin: str) -> None:
    headers = {"Host": HOST, "Origin": origin, guard.TOKEN_HEADER: TOKEN}
    why = refusal("/api/md/ml/x/promote", headers)
    assert why is not None and "Origin" in why


@pytest.mark.parametrize("path", ["/api/list", "/api/stream", "/api/md/ml/x/promote"])
def test_the_api_still_needs_the_pages_token_against_csrf(path: str) -> None:
    for wrong in ({}, {guard.TOKEN_HEADER: "guess"}):
        why = refusal(path, {"Host": HOST, **wrong})
        assert why is not None and "token" in why and "reload" in why


def test_the_probes_pass_with_the_pods_address_as_host() -> None:
    assert refusal(guard.HEALTH, {"Host": "10.0.0.7:8080"}) is None


def test_each_person_gets_their_own_token() -> None:
    alice, bob = Identity("alice"), Identity("bob")
    assert incluster.session_token(b"s", alice) == incluster.session_token(b"s", Identity("alice"))
    assert incluster.session_token(b"s", alice) != incluster.session_token(b"s", bob)
    assert incluster.session_token(b"s", alice) != incluster.session_token(b"t", alice)
    assert incluster.session_token(b"s", alice) != incluster.session_token(b"s", Identity("alice", ("x",)))


# ---- the action gate and the review -------------------------------------------------------------


def test_actions_are_off_unless_configured_and_the_refusal_names_the_chart_value() -> None:
    read_only = InCluster(hosts=(HOST,), user_header="X-Forwarded-User")
    why = incluster.action_refusal(read_only, Identity("alice"))
    assert why is not None and "dashboard.actions.enabled=true" in why and "read-only" in why
    assert incluster.action_refusal(MODE, Identity("alice")) is None
    nobody = incluster.identity({}, MODE)
    assert incluster.action_refusal(MODE, nobody) == nobody


def test_the_review_asks_for_a_patch_of_the_status_as_the_person() -> None:
    review = incluster.access_review(Identity("alice", ("ml-team",)), "ml", "fraud-detector")
    assert review["kind"] == "SubjectAccessReview"
    assert review["spec"]["user"] == "alice"
    assert review["spec"]["groups"] == ["ml-team", "system:authenticated"]  # as impersonation adds it
    assert review["spec"]["resourceAttributes"] == {
        "group": "modelship.io",
        "resource": "modeldeployments",
        "subresource": "status",
        "verb": "patch",
        "namespace": "ml",
        "name": "fraud-detector",
    }


def test_a_denied_review_is_refused_in_kubectls_words_naming_the_person() -> None:
    who = Identity("alice", ("ml-team",))
    assert incluster.review_refusal(who, "ml", "fd", {"allowed": True}) is None
    why = incluster.review_refusal(who, "ml", "fd", {"allowed": False})
    assert why == (
        'User "alice" (groups ml-team) cannot patch resource "modeldeployments/status" in API group '
        '"modelship.io" in the namespace "ml" (modeldeployment "fd"): no RBAC rule allows it'
    )
    denied = {"allowed": False, "denied": True, "reason": "denied by policy"}
    assert (incluster.review_refusal(who, "ml", "fd", denied) or "").endswith(": denied by policy")


# ---- the flags ------------------------------------------------------------------------------------


def parse(*argv: str) -> Any:
    return args.parser().parse_args(["dashboard", *argv])


def test_the_flags_make_the_mode() -> None:
    a = parse(
        "--in-cluster",
        "--listen",
        "0.0.0.0:9000",
        "--public-host",
        HOST,
        "--public-host",
        "dash.internal:8443",
        "--actions",
        "--user-header",
        "X-Forwarded-User",
        "--groups-header",
        "X-Forwarded-Groups",
        "--user-prefix",
        "oidc:",
    )
    assert a.listen == ("0.0.0.0", 9000)
    assert mode_of(a) == InCluster(
        hosts=(HOST, "dash.internal:8443"),
        actions=True,
        user_header="X-Forwarded-User",
        groups_header="X-Forwarded-Groups",
        user_prefix="oidc:",
    )
    assert parse().listen == ("0.0.0.0", 8080)
    assert mode_of(parse()) is None


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--actions"], "--actions needs --in-cluster"),
        (["--public-host", HOST], "--public-host needs --in-cluster"),
        (["--in-cluster"], "--public-host: in-cluster mode needs the host name(s)"),
        (["--in-cluster", "--public-host", HOST, "--actions"], "--actions needs --user-header"),
    ],
)
def test_flags_that_do_not_fit_are_a_usage_error_naming_the_flag(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plugin.main(["dashboard", *argv]) == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("text", ["8080", "0.0.0.0:", "0.0.0.0:http", ":8080", "0.0.0.0:70000"])
def test_a_bad_listen_address_is_a_usage_error_naming_the_flag(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--listen", text)
    assert exited.value.code == 2
    assert "argument --listen: must be ADDRESS:PORT" in capsys.readouterr().err


# ---- over HTTP, without a cluster (nothing here reaches the API server) --------------------------


def serve(mode: InCluster, *requests: tuple[str, str, dict[str, str]]) -> list[tuple[int, str]]:
    """Each request's status and body, against the dashboard's app on a local port."""
    unreachable = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))

    async def go() -> list[tuple[int, str]]:
        application = server.app(
            Storage(unreachable), server.Hub(), guard.public(mode.hosts), "s", None, mode
        )
        async with TestServer(application) as test, ClientSession() as session:
            out = []
            for method, path, headers in requests:
                async with session.request(method, test.make_url(path), headers=headers) as answer:
                    out.append((answer.status, await answer.text()))
            return out

    return asyncio.run(go())


def test_read_only_the_page_has_no_buttons_and_an_action_is_refused_naming_the_chart_value() -> None:
    mode = InCluster(hosts=(HOST,), user_header="X-Forwarded-User")
    person = {"Host": HOST, "X-Forwarded-User": "alice"}
    token = incluster.session_token(b"s", Identity("alice"))
    (page, action) = serve(
        mode,
        ("GET", "/", person),
        ("POST", "/api/md/ml/fd/promote", {**person, guard.TOKEN_HEADER: token}),
    )
    assert page[0] == 200
    assert '<meta name="modelship-actions" content="off">' in page[1]
    assert '<meta name="modelship-user" content="alice">' in page[1]
    assert f'<meta name="modelship-token" content="{token}">' in page[1]
    assert action[0] == 403 and "dashboard.actions.enabled=true" in action[1]


def test_with_actions_on_the_page_has_buttons_and_a_request_the_proxy_did_not_name_is_refused() -> None:
    token = incluster.session_token(b"s", Identity("alice", ("ml-team",)))
    person = {"Host": HOST, "X-Forwarded-User": "alice", "X-Forwarded-Groups": "ml-team"}
    page, unnamed, health = serve(
        MODE,
        ("GET", "/", person),
        ("GET", "/api/list", {"Host": HOST, guard.TOKEN_HEADER: token}),
        ("GET", guard.HEALTH, {"Host": "10.0.0.7:8080"}),
    )
    assert '<meta name="modelship-actions" content="on">' in page[1]
    assert unnamed[0] == 403 and "no X-Forwarded-User header" in unnamed[1]
    assert health == (200, "ok")


def test_the_user_is_escaped_in_the_page() -> None:
    (page,) = serve(MODE, ("GET", "/", {"Host": HOST, "X-Forwarded-User": 'a"><script>'}))
    assert '<script>"' not in page[1] and 'content="a&quot;&gt;&lt;script&gt;"' in page[1]
