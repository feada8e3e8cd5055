"""The dashboard's in-cluster mode, pure: who the person behind the auth proxy is, whether they may
steer, and the SubjectAccessReview that asks the API server
(docs/dashboard.md#in-the-cluster-dashboardenabled).

Installed by the chart (`dashboard.enabled`), the dashboard sits behind an auth proxy (oauth2-proxy,
say) that logs people in and names them in request headers. It reads with its own ServiceAccount
(get, list, watch: the same for everyone who passed the proxy) and is read-only unless
`dashboard.actions.enabled`. With actions on, each one is first asked of the API server as a
SubjectAccessReview for the person, then sent impersonating them (Impersonate-User and
Impersonate-Group), so RBAC and the audit log see the person, never the dashboard's own rights.

The identity headers are trusted only when configured, and only because the Service is reachable
through the proxy alone (the chart's NetworkPolicy): whoever reaches the pod directly could name
anyone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from modelship import api

ACTIONS_VALUE = "dashboard.actions.enabled"  # the chart value (flag --actions) that turns actions on
RESERVED = "system:"  # Kubernetes' own users and groups: never a person behind the proxy
AUTHENTICATED = "system:authenticated"  # every impersonated user is in it; a review must say so too


@dataclass(frozen=True)
class Identity:
    """The person behind the proxy, as the API server's RBAC names them (prefixes applied)."""

    user: str
    groups: tuple[str, ...] = ()

    @property
    def named(self) -> str:
        return f'User "{self.user}"' + (f" (groups {', '.join(self.groups)})" if self.groups else "")


@dataclass(frozen=True)
class InCluster:
    """The in-cluster mode's settings (the chart's `dashboard.*` values, as flags).

    `user_header` / `groups_header`: the proxy's headers naming the person (groups: a comma-separated
    list); None: not trusted, so no actions. `user_prefix` / `groups_prefix`: prepended to each, as
    the API server's `--oidc-username-prefix` / `--oidc-groups-prefix` do for the same people."""

    hosts: tuple[str, ...]
    actions: bool = False
    user_header: str | None = None
    groups_header: str | None = None
    user_prefix: str = ""
    groups_prefix: str = ""

    def problem(self) -> str | None:
        """What makes these settings unusable, naming the flag; None when they are fine."""
        if not self.hosts:
            return "--public-host: in-cluster mode needs the host name(s) people open"
        if self.actions and not self.user_header:
            return (
                "--actions needs --user-header (dashboard.identity.userHeader): actions are taken as "
                "the person the auth proxy names, never as the dashboard"
            )
        return None


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of a header: oauth2-proxy sends one X-Forwarded-Groups header per group."""
    if isinstance(headers, MultiMapping):
        return [str(v) for v in headers.getall(name, [])]
    return [headers[name]] if name in headers else []


def identity(headers: Mapping[str, str], mode: InCluster) -> Identity | str:
    """The person the proxy names, or why there is none (the message names the header)."""
    if not mode.user_header:
        return f"no identity: the dashboard trusts no header for it ({ACTIONS_VALUE} needs userHeader)"
    users = [u.strip() for u in _values(headers, mode.user_header)]
    if len(users) > 1:  # a client's own header beside the proxy's: trust neither
        return f"more than one {mode.user_header} header: the proxy must replace, not add to, the client's"
    if not users or not users[0]:
        return f"no {mode.user_header} header: the dashboard must be reached through its auth proxy"
    user = users[0]
    groups: tuple[str, ...] = ()
    if mode.groups_header:
        given = ",".join(_values(headers, mode.groups_header))  # one header per group, or a list
        groups = tuple(dict.fromkeys(g.strip() for g in given.split(",") if g.strip()))
    found = Identity(mode.user_prefix + user, tuple(mode.groups_prefix + g for g in groups))
    reserved = [n for n in (found.user, *found.groups) if n.startswith(RESERVED)]
    if reserved:
        return f"{reserved[0]!r} is reserved for Kubernetes itself: the dashboard acts for people only"
    return found


def action_refusal(mode: InCluster, who: Identity | str) -> str | None:
    """Why no action may be taken at all (read-only, or nobody named), or None."""
    if not mode.actions:
        return (
            f"actions are off in this dashboard (read-only): they need the chart value {ACTIONS_VALUE}=true"
        )
    if isinstance(who, str):
        return who
    return None


def session_token(secret: bytes, who: Identity | str) -> str:
    """The page's token for this person: made from the dashboard's secret, so another person's
    page (or another site, which cannot read the page) does not have it."""
    subject = who.user + "\n" + ",".join(who.groups) if isinstance(who, Identity) else ""
    return hmac.new(secret, subject.encode(), hashlib.sha256).hexdigest()


def access_review(who: Identity, namespace: str, name: str) -> dict[str, Any]:
    """The SubjectAccessReview for an action: every steering verb is a merge patch of the
    ModelDeployment's status (`modelship.plugin.verbs`)."""
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": who.user,
            "groups": [*who.groups, AUTHENTICATED],
            "resourceAttributes": {
                "group": api.GROUP,
                "resource": "modeldeployments",
                "subresource": "status",
                "verb": "patch",
                "namespace": namespace,
                "name": name,
            },
        },
    }


def review_refusal(who: Identity, namespace: str, name: str, status: Mapping[str, Any]) -> str | None:
    """The answered review's refusal, in kubectl's words, or None when it allows the action."""
    if status.get("allowed") is True:
        return None
    why = status.get("reason") or status.get("evaluationError") or "no RBAC rule allows it"
    return (
        f'{who.named} cannot patch resource "modeldeployments/status" in API group "{api.GROUP}" '
        f'in the namespace "{namespace}" (modeldeployment "{name}"): {why}'
    )
