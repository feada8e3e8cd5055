"""``modelserver fetch URL --sha256 HEX --dest PATH``: download a model artifact and verify it.

modelship runs this in an init container (the serving image itself) for ``spec.model.source.uri``:
it writes the artifact to an emptyDir that the model container mounts read-only. The download goes
to a temporary file beside ``--dest`` and is renamed into place only once its sha256 matches, so a
wrong artifact is never where the server looks for it. Standard library only: the image's
dependencies are a hashed lock, and HTTP GET plus request signing need nothing more.

Sources and credentials (environment variables, normally from a Secret via ``envFrom``):

- ``https://...``: a plain GET; ``FETCH_BEARER_TOKEN`` adds ``Authorization: Bearer``.
- ``s3://bucket/key``: AWS Signature Version 4 with ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``); ``AWS_REGION`` (default us-east-1);
  ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for S3-compatible stores (path-style URLs).
  Without keys the GET is anonymous (a public bucket).
- ``gs://bucket/key``: the Cloud Storage XML API, with ``FETCH_BEARER_TOKEN`` (an OAuth access
  token) or HMAC keys ``GS_ACCESS_KEY_ID`` / ``GS_SECRET_ACCESS_KEY`` (V4 signing, GOOG4-HMAC-SHA256);
  ``STORAGE_EMULATOR_HOST`` overrides the endpoint.
- ``FETCH_CA_CERT``: PEM certificates to trust instead of the system's, for any https endpoint.

Exit codes: 0 the artifact is in place and verified, 2 bad arguments, 3 checksum mismatch
(the last line printed names the expected and the actual sha256), 5 the download failed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

from .artifact import sha256_of

# The server's own codes for bad configuration and a checksum mismatch: one meaning per code.
from .cli import EXIT_CHECKSUM, EXIT_CONFIG

EXIT_DOWNLOAD = 5

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
SCHEMES = ("https", "s3", "gs")


class FetchError(Exception):
    """The artifact could not be downloaded; the message says why."""


class UsageError(FetchError):
    """The arguments or the credentials in the environment are wrong."""


class ChecksumMismatch(FetchError):
    """The downloaded bytes are not the approved artifact."""


# ---- Signature Version 4 (AWS; Cloud Storage's GOOG4 is the same algorithm, renamed) ----------


@dataclass(frozen=True)
class SigV4:
    """One flavour of the V4 signing algorithm."""

    prefix: str  # "AWS4" / "GOOG4": the algorithm name's prefix and the signing key's seed
    terminator: str  # "aws4_request" / "goog4_request": the credential scope's last part
    header_prefix: str  # "x-amz-" / "x-goog-": the date, content hash and token headers


AWS4 = SigV4("AWS4", "aws4_request", "x-amz-")
GOOG4 = SigV4("GOOG4", "goog4_request", "x-goog-")


def _uri_encode(text: str, keep_slash: bool) -> str:
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        pairs.append((_uri_encode(key, False), _uri_encode(value, False)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    now: datetime,
    payload_sha256: str = EMPTY_SHA256,
    flavor: SigV4 = AWS4,
) -> dict[str, str]:
    """The request's headers with the date header and ``Authorization`` added.

    ``url``'s path must already be URI-encoded the way the request sends it (S3 and Cloud Storage
    encode each key segment once). Every header given is signed, and ``host`` always is.
    """
    parts = urlsplit(url)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    out[f"{flavor.header_prefix}date"] = stamp
    names = sorted(out)
    canonical_headers = "".join(f"{n}:{' '.join(out[n].split())}\n" for n in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        [
            method,
            parts.path or "/",
            canonical_query(parts.query),
            canonical_headers,
            signed_headers,
            payload_sha256,
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/{flavor.terminator}"
    algorithm = f"{flavor.prefix}-HMAC-SHA256"
    to_sign = "\n".join([algorithm, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = f"{flavor.prefix}{secret_key}".encode()
    for part in (stamp[:8], region, service, flavor.terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"{algorithm} Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
    return out


# ---- from a source URL to one HTTP GET ---------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """The GET that downloads an artifact; ``shown`` is the URL safe to print (no query string)."""

    url: str
    headers: dict[str, str]

    @property
    def shown(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")


def _bucket_and_key(source: str) -> tuple[str, str]:
    parts = urlsplit(source)
    key = parts.path.lstrip("/")
    if not parts.netloc or not key:
        raise UsageError(f"{source!r} must name a bucket and an object: {parts.scheme}://<bucket>/<key>")
    return parts.netloc, key


def _env(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def plan(source: str, env: Mapping[str, str], now: datetime) -> Request:
    """The GET for ``source`` (https://, s3:// or gs://), signed with the credentials in ``env``."""
    scheme = urlsplit(source).scheme
    token = _env(env, "FETCH_BEARER_TOKEN")
    if scheme == "https":
        return Request(source, {"authorization": f"Bearer {token}"} if token else {})
    if scheme == "s3":
        bucket, key = _bucket_and_key(source)
        region = _env(env, "AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = _env(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL").rstrip("/")
        if endpoint:  # S3-compatible stores (MinIO, Ceph, ...) want path-style URLs
            url = f"{endpoint}/{_uri_encode(bucket, False)}/{_uri_encode(key, True)}"
        else:
            url = f"https://{bucket}.s3.{region}.amazonaws.com/{_uri_encode(key, True)}"
        access, secret = _env(env, "AWS_ACCESS_KEY_ID"), _env(env, "AWS_SECRET_ACCESS_KEY")
        if bool(access) != bool(secret):
            raise UsageError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
        if not access:
            return Request(url, {})
        headers = {"x-amz-content-sha256": EMPTY_SHA256}
        session = _env(env, "AWS_SESSION_TOKEN")
        if session:
            headers["x-amz-security-token"] = session
        signed = sign(
            "GET", url, headers, access_key=access, secret_key=secret, region=region, service="s3", now=now
        )
        return Request(url, signed)
    if scheme == "gs":
        bucket, key = _bucket_and_key(source)
        endpoint = (_env(env, "STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com").rstrip("/")
        url = f"{endpoint}/{_uri_encode(bucket, False)}/{_uri_encode(key, True)}"
        access, secret = _env(env, "GS_ACCESS_KEY_ID"), _env(env, "GS_SECRET_ACCESS_KEY")
        if bool(access) != bool(secret):
            raise UsageError("set both GS_ACCESS_KEY_ID and GS_SECRET_ACCESS_KEY, or neither")
        if access and token:
            raise UsageError("set FETCH_BEARER_TOKEN or the GS_ HMAC keys, not both")
        if token:
            return Request(url, {"authorization": f"Bearer {token}"})
        if not access:
            return Request(url, {})
        signed = sign(
            "GET",
            url,
            {"x-goog-content-sha256": EMPTY_SHA256},
            access_key=access,
            secret_key=secret,
            region="auto",
            service="storage",
            now=now,
            flavor=GOOG4,
        )
        return Request(url, signed)
    raise UsageError(f"{source!r} must start with https://, s3:// or gs://")


# ---- download and verify --------------------------------------------------------------------


def _ssl_context(env: Mapping[str, str]) -> ssl.SSLContext:
    ca = _env(env, "FETCH_CA_CERT")
    return ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()


def fetch(
    source: str,
    expected: str,
    dest: Path,
    env: Mapping[str, str],
    timeout: float = 60.0,
    now: datetime | None = None,
) -> str:
    """Download ``source`` to ``dest`` if its sha256 is ``expected``; return a line saying what was done.

    An artifact already at ``dest`` with the right sha256 is kept (an init container restarted in
    the same pod finds its emptyDir filled).
    """
    if dest.is_file() and sha256_of(dest) == expected:
        return f"{dest} is already there with sha256 {expected}"
    request = plan(source, env, now or datetime.now(UTC))
    get = urllib.request.Request(request.url, method="GET")
    for name, value in request.headers.items():
        # Not forwarded on a redirect: a token or signature is for the host it was made for.
        get.add_unredirected_header(name.capitalize(), value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as tmp:
        partial = Path(tmp.name)
        try:
            with urllib.request.urlopen(get, timeout=timeout, context=_ssl_context(env)) as response:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    tmp.write(chunk)
                    size += len(chunk)
        except urllib.error.HTTPError as e:
            partial.unlink()
            raise FetchError(f"GET {request.shown} answered {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            partial.unlink()
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            raise FetchError(f"GET {request.shown} failed: {reason}") from None
    actual = digest.hexdigest()
    if actual != expected:
        partial.unlink()
        raise ChecksumMismatch(
            f"checksum mismatch: expected sha256 {expected} but got sha256 {actual} ({size} bytes) "
            f"from {request.shown}; the artifact was not stored"
        )
    partial.chmod(0o444)
    partial.replace(dest)
    return f"{dest}: {size} bytes from {request.shown}, sha256 {actual} verified"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="modelserver fetch",
        description="Download a model artifact (https://, s3://, gs://), verify its sha256, store it.",
    )
    p.add_argument("url", help="https://host/path, s3://bucket/key or gs://bucket/key")
    p.add_argument("--sha256", default=os.environ.get("MODEL_SHA256", ""), help="default: $MODEL_SHA256")
    p.add_argument("--dest", required=True, type=Path, help="where the verified artifact is stored")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    expected = args.sha256.strip().lower().removeprefix("sha256:")
    try:
        if not _SHA256.match(expected):
            raise UsageError(f"--sha256 must be 64 hex digits, got {args.sha256!r}")
        print(f"modelserver fetch: {fetch(args.url, expected, args.dest, os.environ, args.timeout)}")
    except UsageError as e:
        print(f"modelserver fetch: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except ChecksumMismatch as e:
        print(f"modelserver fetch: {e}", file=sys.stderr)
        return EXIT_CHECKSUM
    except FetchError as e:
        print(f"modelserver fetch: {e}", file=sys.stderr)
        return EXIT_DOWNLOAD
    return 0
