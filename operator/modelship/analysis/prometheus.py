"""Prometheus instant queries through prometheus-api-client, reduced to one number or None.

What prometheus-api-client 0.7.2 lacks is filled in through the `requests.Session` we hand it
(no globals are patched): a CA bundle given as PEM text (it only knows "verify or not"), an error
that carries Prometheus' own message (it reports the raw body), and no hidden retries (its
default retries with backoff would outlast the timeout; the analysis loop retries anyway).
"""

from __future__ import annotations

import json
import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from modelship import api

ENV_ADDRESS = "MODELSHIP_PROMETHEUS_ADDRESS"
ENV_AUTH_SECRET = "MODELSHIP_PROMETHEUS_AUTH_SECRET"
SECRET_KEYS = ("token", "username", "password", "ca.crt")


@dataclass(frozen=True)
class PrometheusConfig:
    address: str  # http(s)://host:port[/path]
    timeout_seconds: float = 5.0
    bearer_token: str | None = None
    username: str | None = None  # basic auth, with password
    password: str | None = None
    ca_pem: str | None = None  # PEM CA bundle to verify the server
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"prometheus address {self.address!r} must look like http(s)://host:port[/path]")
        if not (self.timeout_seconds > 0 and math.isfinite(self.timeout_seconds)):
            raise ValueError(f"prometheus timeout {self.timeout_seconds!r} must be a positive number")
        if (self.username is None) != (self.password is None):
            raise ValueError("prometheus basic auth needs both username and password")
        if self.bearer_token is not None and self.username is not None:
            raise ValueError("prometheus auth: give a bearer token or a username and password, not both")
        if self.ca_pem is not None:
            _ssl_context(self.ca_pem)  # raises ValueError on a bad bundle


class QueryError(Exception):
    """A query could not be answered; the message says why, for an Error verdict."""

    unreachable = False


class Unreachable(QueryError):
    """Prometheus did not answer at all (connection refused, timed out, TLS failed): nothing is
    known about the revision, so the verdict is Inconclusive rather than Error."""

    unreachable = True


def config_from_secret(
    address: str,
    data: Mapping[str, str],
    secret: str,
    timeout_seconds: float = 5.0,
    insecure_skip_verify: bool = False,
) -> PrometheusConfig:
    """A config from a Secret's *decoded* data: `token`, or `username` and `password`; optionally
    `ca.crt`. Trailing newlines (from `kubectl create secret --from-file`) are dropped."""
    unknown = sorted(set(data) - set(SECRET_KEYS))
    if unknown:
        raise ValueError(
            f"Secret {secret!r} has key {unknown[0]!r}; expected `token`, or `username` and "
            "`password`, and optionally `ca.crt`"
        )
    values = {key: value.rstrip("\r\n") for key, value in data.items()}
    for key, value in values.items():
        if not value.strip():
            raise ValueError(f"Secret {secret!r}: key {key!r} is empty")
        if key != "ca.crt" and not value.isascii():
            raise ValueError(f"Secret {secret!r}: key {key!r} must be ASCII (it goes into an HTTP header)")
    for key, other in (("username", "password"), ("password", "username")):
        if key in values and other not in values:
            raise ValueError(f"Secret {secret!r} has {key!r} but no {other!r}; basic auth needs both")
    if "token" in values and "username" in values:
        raise ValueError(f"Secret {secret!r} has both 'token' and 'username'/'password'; keep one")
    if not values:
        raise ValueError(f"Secret {secret!r} is empty; expected `token`, or `username` and `password`")
    try:
        return PrometheusConfig(
            address=address,
            timeout_seconds=timeout_seconds,
            bearer_token=values.get("token"),
            username=values.get("username"),
            password=values.get("password"),
            ca_pem=values.get("ca.crt"),
            insecure_skip_verify=insecure_skip_verify,
        )
    except ValueError as e:
        raise ValueError(f"Secret {secret!r}: {e}") from e


def operator_default(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(address, auth Secret name) the operator was started with; empty counts as unset."""
    return env.get(ENV_ADDRESS) or None, env.get(ENV_AUTH_SECRET) or None


def _ssl_context(ca_pem: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as e:
        raise ValueError(f"the CA bundle is not valid PEM certificates: {e}") from e


class _Adapter(HTTPAdapter):
    """No retries; with a CA bundle, verify against exactly that bundle."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if self._context is not None and verify is True:
            # requests would add its default bundle to our context; the configured CA is the trust.
            conn.ca_certs = None
            conn.ca_cert_dir = None


_SSL_REASON = re.compile(r"\[SSL[^\]]*\][^'\"()]*|certificate verify failed[^'\"()]*")
_OS_REASON = re.compile(r"\[Errno -?\d+\][^'\"()]*")


def reason(error: Exception) -> str:
    text = str(error)
    found = _SSL_REASON.search(text) or _OS_REASON.search(text)
    return found.group(0).strip(" :,") if found else type(error).__name__


class Prometheus:
    """Queries against one Prometheus. `query` returns one float, or None for no data; `query_range`
    a series of points (the dashboard's charts)."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        self._address = config.address.rstrip("/")
        session = requests.Session()
        session.verify = not config.insecure_skip_verify
        session.hooks["response"].append(self._raise_for_status)
        # The library's hints say int timeout and non-optional headers/auth; requests takes these.
        options: dict[str, Any] = {"session": session, "retry": Retry(0), "timeout": config.timeout_seconds}
        if config.bearer_token:
            options["headers"] = {"Authorization": f"Bearer {config.bearer_token}"}
        if config.username and config.password:
            options["auth"] = (config.username, config.password)
        self._client = PrometheusConnect(url=self._address, **options)
        # Mounted after the library mounts its own adapter on the same prefix, so ours wins.
        context = _ssl_context(config.ca_pem) if config.ca_pem and not config.insecure_skip_verify else None
        session.mount(self._address, _Adapter(context))
        self._session = session

    def close(self) -> None:
        self._session.close()

    def _raise_for_status(self, response: requests.Response, *_: Any, **__: Any) -> None:
        if response.status_code < 400:
            return
        text = response.text.strip()
        try:
            body = json.loads(text)
            text = str(body.get("error") or text) if isinstance(body, dict) else text
        except ValueError:
            pass
        status = f"HTTP {response.status_code} {response.reason or ''}".strip()
        if response.status_code in (401, 403):
            raise QueryError(f"Prometheus at {self._address} refused the credentials ({status}): {text[:99]}")
        raise QueryError(f"Prometheus at {self._address} answered {status}: {text[:300]}")

    def _result(self, promql: str) -> Any:
        try:
            return self._client.custom_query(promql)
        except (requests.RequestException, PrometheusApiClientException, KeyError, TypeError) as e:
            raise self._problem(e) from e

    def _problem(self, e: Exception) -> Unreachable | QueryError:
        """What a failed query means, in the words a person needs (the most specific cause first)."""
        where = f"Prometheus at {self._address}"
        if isinstance(e, requests.Timeout):
            return Unreachable(f"{where} did not answer within {self.config.timeout_seconds:g}s")
        if isinstance(e, requests.exceptions.SSLError):
            return Unreachable(
                f"TLS with {where} failed: {reason(e)} "
                "(give its CA as `ca.crt` in the auth Secret, or skip verification)"
            )
        if isinstance(e, requests.ConnectionError):
            return Unreachable(f"{where} is unreachable: {reason(e)}")
        if isinstance(
            e, (requests.exceptions.JSONDecodeError, PrometheusApiClientException, KeyError, TypeError)
        ):
            return QueryError(
                f"{self._address} did not answer like a Prometheus query API ({type(e).__name__}); "
                "is the address right?"
            )
        return QueryError(f"querying {where} failed: {e}")

    def query(self, promql: str) -> float | None:
        """The instant query's single value: None when there are no series or the value is NaN
        (e.g. 0/0 with no traffic); QueryError when it returns several series."""
        result = self._result(promql)
        if not isinstance(result, list):
            raise QueryError(f"Prometheus at {self._address} returned an unexpected result: {result!r:.200}")
        if not result:
            return None
        if not isinstance(result[0], dict):  # a scalar: [time, "value"]
            return _number(result[1] if len(result) == 2 else None)
        if len(result) > 1:
            shown = ", ".join(_labels(s.get("metric", {})) for s in result[:3])
            raise QueryError(
                f"query returned {len(result)} series ({shown}{', ...' if len(result) > 3 else ''}); "
                "aggregate it to one (e.g. sum(...))"
            )
        series = result[0]
        if "value" not in series:
            raise QueryError("query returned a range vector; make it an instant one (rate(x[1m]), not x[1m])")
        value = series["value"]
        return _number(value[1] if isinstance(value, list) and len(value) == 2 else None)

    def query_range(
        self, promql: str, start: datetime, end: datetime, step_seconds: int
    ) -> list[tuple[float, float]]:
        """A range query's one series as (unix time, value) points, NaN points left out; [] when
        there is no series (the dashboard's charts)."""
        try:
            result = self._client.custom_query_range(promql, start, end, f"{step_seconds}s")
        except (requests.RequestException, PrometheusApiClientException, KeyError, TypeError) as e:
            raise self._problem(e) from e
        if not isinstance(result, list) or len(result) > 1:
            raise QueryError(
                f"range query returned {len(result) if isinstance(result, list) else result!r:.80} "
                "series; aggregate it to one"
            )
        points = []
        for at, text in (result[0].get("values") or []) if result else []:
            number = _number(text)
            if number is not None:
                points.append((float(at), number))
        return points

    def query_by(self, promql: str, label: str) -> dict[str, float]:
        """The instant query's series by their value of `label` (a histogram's `le`, say): one
        number each; a series without the label, a scalar or a range vector is a QueryError, a NaN
        value is left out."""
        result = self._result(promql)
        if not isinstance(result, list) or (result and not isinstance(result[0], dict)):
            raise QueryError(f"query returned {result!r:.200}, not series by {label}")
        out = {}
        for series in result:
            key, value = (series.get("metric") or {}).get(label), series.get("value")
            if key is None or not isinstance(value, list) or len(value) != 2:
                raise QueryError(
                    f"query returned a series without {label}: {_labels(series.get('metric', {}))}"
                )
            number = _number(value[1])
            if number is not None:
                out[key] = number
        return out

    def targets(self) -> list[Target]:
        """The active scrape targets: their labels, interval and last scrape (target metadata)."""
        try:
            data = self._client.get_targets(state="active")
        except (requests.RequestException, PrometheusApiClientException, KeyError, TypeError) as e:
            raise self._problem(e) from e
        out = []
        for t in data.get("activeTargets") or []:
            interval = t.get("scrapeInterval")
            if not interval:
                continue  # Prometheus before 2.34 does not say
            last = t.get("lastScrape") or ""
            out.append(
                Target(
                    labels=t.get("labels") or {},
                    interval=api.parse_duration(interval),
                    last=_timestamp(last) if not last.startswith("0001-") else None,
                    duration=timedelta(seconds=float(t.get("lastScrapeDuration") or 0.0)),
                )
            )
        return out


@dataclass(frozen=True)
class Target:
    labels: Mapping[str, str]
    interval: timedelta
    last: datetime | None
    duration: timedelta


def _timestamp(text: str) -> datetime | None:
    """An RFC 3339 time with up to nanoseconds (Go's), to the microsecond."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(base + (zone if zone != "Z" else "+00:00"))
    return stamp.replace(microsecond=int((fraction or "0")[:6].ljust(6, "0")))


def _labels(metric: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def _number(text: object) -> float | None:
    try:
        value = float(str(text))
    except ValueError:
        raise QueryError(f"query returned {text!r}, not a number") from None
    return None if math.isnan(value) else value
