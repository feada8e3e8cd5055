"""The shell's side of web metrics (`provider: web`): call the endpoint, hand the answer to the core.

One call per measurement, and a second one for the stable revision when the metric has
`maxIncreaseVsStable`/`maxDropVsStable` (its `{{revision}}` is then the stable revision). No retries:
the analysis loop measures again at the next interval. Header values read from Secrets go into
the request only: they are never logged or put into a message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import requests

from modelship import api
from modelship.analysis.prometheus import reason
from modelship.core.analysis import templates
from modelship.core.analysis import web as reading
from modelship.core.analysis.verdicts import RawMeasurement

SecretReader = Callable[[str, str], Mapping[str, str]]  # (namespace, name) -> decoded data


class _Problem(Exception):
    """The call cannot be made or was not answered; the message says which, for an Error."""


def measure(
    metric: api.Metric,
    variables: Mapping[str, str],
    stable: str,
    read_secret: SecretReader,
) -> RawMeasurement:
    """One measurement of web metric `metric`: `variables` are the `{{...}}` values for the judged
    revision (`templates.VARIABLES`), `stable` the revision compared against."""
    web = metric.web
    assert web is not None  # admission: provider web goes with web
    secret: list[str] = []  # header values from Secrets, kept out of every message
    try:
        headers = _headers(metric.name, web, variables["namespace"], read_secret, secret)
        value = _value(web, variables, headers)
        stable_value = None
        relative = metric.max_increase_vs_stable is not None or metric.max_drop_vs_stable is not None
        if relative and value.error is None:
            stable_value = _value(web, {**variables, "revision": stable}, headers)
    except _Problem as problem:
        return RawMeasurement(error=_redacted(str(problem), secret))
    failed = value.error or (stable_value.error if stable_value is not None else None)
    if failed is not None:
        return RawMeasurement(error=_redacted(failed, secret))
    return RawMeasurement(
        value=value.value,
        stable_value=stable_value.value if stable_value is not None else None,
        missing=value.missing,
    )


def _headers(
    metric: str, web: api.WebMetric, namespace: str, read: SecretReader, secret: list[str]
) -> dict[str, str]:
    """The request's headers; the values read from Secrets are also added to `secret`."""
    out = {}
    for header in web.headers:
        if header.value is not None:
            out[header.name] = header.value
            continue
        assert header.value_from is not None  # admission: value or valueFrom
        ref = header.value_from.secret_key_ref
        field = f"spec.analysis.metrics[{metric}].web.headers[{header.name}].valueFrom"
        try:
            data = read(namespace, ref.name)
        except Exception as err:  # not found, forbidden, ...: say which field names it
            raise _Problem(f"cannot read Secret {namespace}/{ref.name} ({field}): {err}") from err
        if ref.key not in data:
            raise _Problem(f"Secret {namespace}/{ref.name} has no key {ref.key!r} ({field})")
        value = data[ref.key].rstrip("\r\n")  # `kubectl create secret --from-file` keeps the newline
        if not value.isascii() or any(c in value for c in "\r\n\0"):
            raise _Problem(
                f"Secret {namespace}/{ref.name} key {ref.key!r} cannot be an HTTP header ({field})"
            )
        out[header.name] = value
        secret.append(value)
    if web.body is not None and not any(h.lower() == "content-type" for h in out):
        out["Content-Type"] = "application/json"
    return out


def _value(web: api.WebMetric, variables: Mapping[str, str], headers: Mapping[str, str]) -> reading.Reading:
    try:
        url = templates.render(web.url, variables)
        body = templates.render(web.body, variables, json=True) if web.body is not None else None
    except ValueError as err:
        raise _Problem(f"web: {err}") from err
    shown = _shown(url)
    timeout = api.parse_duration(web.timeout).total_seconds()
    try:
        answer = requests.request(
            web.method,
            url,
            headers=dict(headers),
            data=body.encode() if body is not None else None,
            timeout=timeout,
        )
    except requests.Timeout:
        raise _Problem(f"web {web.method} {shown} did not answer within {web.timeout}") from None
    except requests.ConnectionError as err:
        raise _Problem(f"web {web.method} {shown} is unreachable: {reason(err)}") from None
    except requests.RequestException as err:
        raise _Problem(f"web {web.method} {shown} failed: {type(err).__name__}") from None
    found = reading.read(answer.status_code, answer.text, web.json_path)
    if found.error is not None:
        return reading.Reading(error=f"web {web.method} {shown} {found.error}")
    return found


def _redacted(message: str, secret: list[str]) -> str:
    """`message` with any Secret value in it (an endpoint may echo a header back) masked."""
    for value in filter(None, secret):
        message = message.replace(value, "<redacted>")
    return message


def _shown(url: str) -> str:
    """The URL as messages show it: without its query string, which may carry a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
