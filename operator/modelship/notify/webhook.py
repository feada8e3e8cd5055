"""One HTTP POST of a JSON body to a webhook URL, the adapter `delivery` sends through.

Errors say what went wrong without the URL (it is a credential, and error texts end up in
logs and in the ModelDeployment's status).
"""

from __future__ import annotations

import urllib.error
import urllib.request

USER_AGENT = "modelship-notifications"


class Failed(Exception):
    """An attempt that did not get a 2xx answer; `status` is the HTTP status (None: no answer)."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def post(url: str, body: bytes, timeout: float) -> None:
    """POST `body` (JSON) to `url`; Failed unless the answer is 2xx within `timeout` seconds (to
    connect, and for each read)."""
    if not url.startswith(("http://", "https://")):
        raise Failed(400, "the webhook URL in the Secret is not an http:// or https:// URL")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read(65536)  # a receiver may wait for us to read its answer
    except urllib.error.HTTPError as err:
        raise Failed(err.code, f"HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise Failed(None, _why(err.reason)) from None
    except TimeoutError:
        raise Failed(None, f"no answer within {timeout:g}s") from None
    except OSError as err:
        raise Failed(None, _why(err)) from None


def _why(reason: object) -> str:
    """A connection failure in words, without the URL."""
    if isinstance(reason, TimeoutError):
        return "no answer within the timeout"
    if isinstance(reason, OSError):
        return f"connection failed: {reason.strerror or type(reason).__name__}"
    return f"connection failed: {type(reason).__name__}"
