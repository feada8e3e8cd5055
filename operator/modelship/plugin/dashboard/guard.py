"""Who may talk to the dashboard, pure: the checks every request passes before the server reads it.

- Host must be `127.0.0.1:<port>` or `localhost:<port>`: a page on another site that points its
  own DNS name at 127.0.0.1 (DNS rebinding) sends its own name as Host and is refused.
- Origin, when the browser sends one, must be the dashboard's own: another site's page may not
  post to it (CSRF) nor read its event stream.
- The session token (random, made at start) must come with every API call and the event stream
  (a request that did not load the page cannot know it), and with the page itself: the address
  printed at start carries it (`/?token=...`), and the page answered sets it as a SameSite=Strict
  cookie so a reload works. Another user of the same machine, who can reach 127.0.0.1 too but
  cannot read the terminal, gets nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

TOKEN_HEADER = "X-Modelship-Token"
TOKEN_QUERY = "token"  # the printed address's and the event stream's: EventSource sends no headers
TOKEN_COOKIE = "modelship-dashboard"


def hosts(port: int) -> frozenset[str]:
    """The Host values the dashboard answers to."""
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})


def refusal(
    path: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    cookies: Mapping[str, str],
    port: int,
    token: str,
) -> str | None:
    """Why this request is refused, or None to serve it. Static assets (the same for everyone)
    need no token; the page and everything under /api/ do."""
    host = headers.get("Host", "")
    if host not in hosts(port):
        return f"Host {host!r} is not this dashboard's (127.0.0.1:{port} or localhost:{port})"
    origin = headers.get("Origin")
    if origin is not None and origin not in {f"http://{h}" for h in hosts(port)}:
        return f"Origin {origin!r} is not this dashboard's: requests from other sites are refused"
    if path.startswith("/static/"):
        return None
    given = headers.get(TOKEN_HEADER) or query.get(TOKEN_QUERY) or cookies.get(TOKEN_COOKIE) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        return "missing or wrong session token: open the address `kubectl modelship dashboard` printed"
    return None
