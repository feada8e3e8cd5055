"""Who may talk to the dashboard, pure: the checks every request passes before the server reads it.

- Host must be one of the site's: `127.0.0.1:<port>` or `localhost:<port>` on a laptop, the
  configured public host(s) in-cluster. A page on another site that points its own DNS name at the
  dashboard (DNS rebinding) sends its own name as Host and is refused.
- Origin, when the browser sends one, must be the dashboard's own: another site's page may not
  post to it (CSRF) nor read its event stream.
- The session token must come with every API call and the event stream (a request that did not
  load the page cannot know it). On a laptop it is random, made at start, and the page needs it
  too: the address printed at start carries it (`/?token=...`), and the page answered sets it as
  a SameSite=Strict cookie so a reload works. Another user of the same machine, who can reach
  127.0.0.1 too but cannot read the terminal, gets nothing. In-cluster the auth proxy decides who
  may load the page, and the page carries a token made for its user (`modelship.plugin.dashboard.
  incluster.session_token`), so the page itself needs none.
- `/healthz` (the kubelet's probes, which send the pod's address as Host) passes every check: it
  says only "ok".
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

TOKEN_HEADER = "X-Modelship-Token"
TOKEN_QUERY = "token"  # the printed address's and the event stream's: EventSource sends no headers
TOKEN_COOKIE = "modelship-dashboard"
HEALTH = "/healthz"


@dataclass(frozen=True)
class Site:
    """Where the dashboard is reached: the Host values it answers to, the Origins it accepts, and
    whether the page itself needs the token (it does where the token is the printed address's)."""

    hosts: frozenset[str]
    origins: frozenset[str]
    page_needs_token: bool

    @property
    def named(self) -> str:
        return " or ".join(sorted(self.hosts))


def local(port: int) -> Site:
    """`kubectl modelship dashboard` on a laptop: the loopback address and localhost at the port."""
    hosts = frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})
    return Site(hosts, frozenset(f"http://{h}" for h in hosts), page_needs_token=True)


def public(names: Iterable[str]) -> Site:
    """In-cluster, behind an auth proxy: the public host names people open (`dash.example.com`, or
    with a port `dash.example.com:8443`), over HTTPS or HTTP."""
    hosts = frozenset(names)
    return Site(
        hosts,
        frozenset(f"{scheme}://{h}" for h in hosts for scheme in ("https", "http")),
        page_needs_token=False,
    )


def refusal(
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    cookies: Mapping[str, str],
    site: Site,
    token: str,
) -> str | None:
    """Why this request is refused, or None to serve it. Static assets (the same for everyone)
    need no token; everything under /api/ does, and the page where `site.page_needs_token`."""
    if path == HEALTH:
        return None
    host = headers.get("Host", "")
    if host not in site.hosts:
        return f"Host {host!r} is not this dashboard's ({site.named})"
    origin = headers.get("Origin")
    if origin is not None and origin not in site.origins:
        return f"Origin {origin!r} is not this dashboard's: requests from other sites are refused"
    if path.startswith("/static/") or (path == "/" and not site.page_needs_token):
        return None
    given = headers.get(TOKEN_HEADER) or query.get(TOKEN_QUERY) or cookies.get(TOKEN_COOKIE) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        if site.page_needs_token:
            return "missing or wrong session token: open the address `kubectl modelship dashboard` printed"
        return "missing or wrong session token: reload the dashboard's page"
    return None
