"""`modelserver fetch`: the init container that downloads a model for spec.model.source.uri.

The command runs as a real process against a real local HTTP(S) server standing in for a web
server, S3 and Cloud Storage. The server checks each request's V4 signature by recomputing it
from the request as received (so what is sent is what was signed); the signing arithmetic itself
is checked against AWS's published test vectors.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from modelserver import fetch
from modelserver.cli import EXIT_CHECKSUM, EXIT_CONFIG

pytestmark = pytest.mark.unit

ARTIFACT = b"not really a model, but bytes with a known sha256\n" * 100
ARTIFACT_SHA = hashlib.sha256(ARTIFACT).hexdigest()
ACCESS, SECRET = "AKIDLOCALTEST", "local/secret+key"


# ---- the signing arithmetic, against published vectors ----------------------------------------


def test_sigv4_reproduces_aws_get_vanilla_vector() -> None:
    """AWS's SigV4 test suite, get-vanilla (AKIDEXAMPLE, 20150830T123600Z)."""
    headers = fetch.sign(
        "GET",
        "https://example.amazonaws.com/",
        {},
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        service="service",
        now=datetime(2015, 8, 30, 12, 36, tzinfo=UTC),
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    assert headers["x-amz-date"] == "20150830T123600Z"


def test_sigv4_reproduces_the_s3_get_object_example() -> None:
    """The GET Object example of the S3 SigV4 documentation (examplebucket, test.txt, a Range)."""
    headers = fetch.sign(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Range": "bytes=0-9", "x-amz-content-sha256": fetch.EMPTY_SHA256},
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        service="s3",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )
    assert headers["authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_sigv4_query_is_sorted_like_the_get_vanilla_query_order_key_case_vector() -> None:
    headers = fetch.sign(
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        {},
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        service="service",
        now=datetime(2015, 8, 30, 12, 36, tzinfo=UTC),
    )
    assert headers["authorization"].endswith(
        "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
    )


def test_goog4_differs_from_aws4_only_in_names_and_key_seed() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    common = {"access_key": ACCESS, "secret_key": SECRET, "region": "auto", "service": "storage", "now": now}
    aws = fetch.sign("GET", "https://storage.googleapis.com/b/k", {}, **common)  # type: ignore[arg-type]
    goog = fetch.sign("GET", "https://storage.googleapis.com/b/k", {}, flavor=fetch.GOOG4, **common)  # type: ignore[arg-type]
    assert goog["authorization"].startswith(
        f"GOOG4-HMAC-SHA256 Credential={ACCESS}/20260102/auto/storage/goog4_request, "
        "SignedHeaders=host;x-goog-date, Signature="
    )
    assert goog["x-goog-date"] == "20260102T030405Z" and "x-amz-date" not in goog
    assert aws["authorization"].rsplit("=", 1)[1] != goog["authorization"].rsplit("=", 1)[1]


@pytest.mark.parametrize(
    ("source", "env", "url"),
    [
        (
            "s3://models/risk/v3/model.onnx",
            {},
            "https://models.s3.us-east-1.amazonaws.com/risk/v3/model.onnx",
        ),
        (
            "s3://models/a b/model.onnx",
            {"AWS_REGION": "eu-west-1"},
            "https://models.s3.eu-west-1.amazonaws.com/a%20b/model.onnx",
        ),
        (
            "s3://models/m.onnx",
            {"AWS_ENDPOINT_URL": "http://minio.store:9000/"},
            "http://minio.store:9000/models/m.onnx",
        ),
        ("gs://models/v3/model.onnx", {}, "https://storage.googleapis.com/models/v3/model.onnx"),
    ],
)
def test_object_urls(source: str, env: dict[str, str], url: str) -> None:
    assert fetch.plan(source, env, datetime.now(UTC)).url == url


def test_anonymous_s3_is_not_signed_and_half_a_key_pair_is_refused() -> None:
    assert fetch.plan("s3://b/k", {}, datetime.now(UTC)).headers == {}
    with pytest.raises(fetch.UsageError, match="AWS_SECRET_ACCESS_KEY"):
        fetch.plan("s3://b/k", {"AWS_ACCESS_KEY_ID": ACCESS}, datetime.now(UTC))


# ---- a real local object store -----------------------------------------------------------------


@dataclass
class Store:
    """What the local server serves and what it saw."""

    objects: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # Set: every request must carry a valid V4 signature by these keys, or be answered 403.
    keys: tuple[str, str] | None = None
    bearer: str | None = None
    url: str = ""


def _signature_ok(store: Store, path: str, headers: dict[str, str]) -> bool:
    """Recompute the V4 signature of the request as received and compare."""
    auth = headers.get("authorization", "")
    m = re.fullmatch(
        r"(AWS4|GOOG4)-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/(aws4|goog4)_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        auth,
    )
    if m is None or store.keys is None or m.group(2) != store.keys[0]:
        return False
    flavor = fetch.AWS4 if m.group(1) == "AWS4" else fetch.GOOG4
    stamp = headers[f"{flavor.header_prefix}date"]
    signed = {
        n: headers[n] for n in m.group(7).split(";") if n not in ("host", f"{flavor.header_prefix}date")
    }
    again = fetch.sign(
        "GET",
        f"http://{headers['host']}{path}",
        signed,
        access_key=store.keys[0],
        secret_key=store.keys[1],
        region=m.group(4),
        service=m.group(5),
        now=datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC),
        payload_sha256=headers.get(f"{flavor.header_prefix}content-sha256", fetch.EMPTY_SHA256),
        flavor=flavor,
    )
    return "host" in m.group(7).split(";") and again["authorization"] == auth


def _handler(store: Store) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            store.requests.append((self.path, headers))
            if store.keys is not None and not _signature_ok(store, self.path, headers):
                self._answer(403, b"SignatureDoesNotMatch")
            elif store.bearer is not None and headers.get("authorization") != f"Bearer {store.bearer}":
                self._answer(401, b"no token")
            elif self.path in store.objects:
                self._answer(200, store.objects[self.path])
            else:
                self._answer(404, b"NoSuchKey")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "tls.crt", d / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _serve(store: Store, tls: tuple[Path, Path] | None) -> Iterator[Store]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(store))
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    store.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield store
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def https(tls: tuple[Path, Path]) -> Iterator[Store]:
    yield from _serve(Store(objects={"/models/model.joblib": ARTIFACT}), tls)


@pytest.fixture
def plain() -> Iterator[Store]:
    """S3 and Cloud Storage stand-ins, reached through their endpoint overrides."""
    yield from _serve(Store(objects={"/bucket/risk/v3/model.joblib": ARTIFACT}), None)


def run_fetch(
    url: str, dest: Path, env: dict[str, str], sha: str = ARTIFACT_SHA
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GS_", "FETCH_", "MODEL_"))}
    command = ["fetch", url, "--sha256", sha, "--dest", str(dest), "--timeout", "10"]
    return subprocess.run(
        [sys.executable, "-m", "modelserver", *command],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def test_https_good_checksum_stores_the_artifact_read_only(
    https: Store, tls: tuple[Path, Path], tmp_path: Path
) -> None:
    https.bearer = "s3cr3t-token"
    dest = tmp_path / "models" / "model.joblib"
    env = {"FETCH_CA_CERT": tls[0].read_text(), "FETCH_BEARER_TOKEN": "s3cr3t-token"}
    done = run_fetch(f"{https.url}/models/model.joblib", dest, env)
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == ARTIFACT
    assert dest.stat().st_mode & 0o222 == 0
    assert f"sha256 {ARTIFACT_SHA} verified" in done.stdout
    assert https.requests[0][1]["authorization"] == "Bearer s3cr3t-token"
    assert "s3cr3t-token" not in done.stdout + done.stderr


def test_https_bad_checksum_exits_3_naming_both_checksums_and_stores_nothing(
    https: Store, tls: tuple[Path, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "model.joblib"
    wrong = "0" * 64
    done = run_fetch(
        f"{https.url}/models/model.joblib", dest, {"FETCH_CA_CERT": tls[0].read_text()}, sha=wrong
    )
    assert done.returncode == EXIT_CHECKSUM
    last = done.stderr.strip().splitlines()[-1]
    assert f"expected sha256 {wrong}" in last and f"got sha256 {ARTIFACT_SHA}" in last
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor a partial download


def test_https_404_exits_5_naming_the_status(https: Store, tls: tuple[Path, Path], tmp_path: Path) -> None:
    done = run_fetch(f"{https.url}/models/missing.joblib?sig=hidden", tmp_path / "m.joblib",
                     {"FETCH_CA_CERT": tls[0].read_text()})  # fmt: skip
    assert done.returncode == fetch.EXIT_DOWNLOAD
    assert "answered 404" in done.stderr
    assert "hidden" not in done.stderr  # a presigned URL's query is a credential
    assert list(tmp_path.iterdir()) == []


def test_https_untrusted_certificate_fails_without_the_ca(https: Store, tmp_path: Path) -> None:
    done = run_fetch(f"{https.url}/models/model.joblib", tmp_path / "m.joblib", {})
    assert done.returncode == fetch.EXIT_DOWNLOAD
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert https.requests == []


def test_a_verified_artifact_already_in_place_is_kept_without_a_download(
    https: Store, tmp_path: Path
) -> None:
    dest = tmp_path / "model.joblib"
    dest.write_bytes(ARTIFACT)
    done = run_fetch(f"{https.url}/models/model.joblib", dest, {})  # no CA: a download would fail
    assert done.returncode == 0, done.stderr
    assert "already there" in done.stdout
    assert https.requests == []


def test_url_without_a_known_scheme_is_a_usage_error(tmp_path: Path) -> None:
    done = run_fetch("models.example.com/model.joblib", tmp_path / "m.joblib", {})
    assert done.returncode == EXIT_CONFIG
    assert "must start with https://, s3:// or gs://" in done.stderr


def test_s3_signed_request_to_a_compatible_endpoint(plain: Store, tmp_path: Path) -> None:
    plain.keys = (ACCESS, SECRET)
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": "session-1",
        "AWS_REGION": "eu-central-1",
        "AWS_ENDPOINT_URL": plain.url,
    }
    dest = tmp_path / "model.joblib"
    done = run_fetch("s3://bucket/risk/v3/model.joblib", dest, env)
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == ARTIFACT
    path, headers = plain.requests[0]
    assert path == "/bucket/risk/v3/model.joblib"
    assert "/eu-central-1/s3/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "session-1"
    assert "x-amz-security-token" in headers["authorization"]  # signed, not only sent


def test_s3_wrong_secret_is_refused_by_the_store(plain: Store, tmp_path: Path) -> None:
    plain.keys = (ACCESS, SECRET)
    env = {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": "wrong", "AWS_ENDPOINT_URL": plain.url}
    done = run_fetch("s3://bucket/risk/v3/model.joblib", tmp_path / "m.joblib", env)
    assert done.returncode == fetch.EXIT_DOWNLOAD
    assert "answered 403" in done.stderr


def test_gs_hmac_keys_sign_with_goog4(plain: Store, tmp_path: Path) -> None:
    plain.keys = (ACCESS, SECRET)
    env = {"GS_ACCESS_KEY_ID": ACCESS, "GS_SECRET_ACCESS_KEY": SECRET, "STORAGE_EMULATOR_HOST": plain.url}
    done = run_fetch("gs://bucket/risk/v3/model.joblib", tmp_path / "model.joblib", env)
    assert done.returncode == 0, done.stderr
    assert plain.requests[0][1]["authorization"].startswith(f"GOOG4-HMAC-SHA256 Credential={ACCESS}/")


def test_gs_oauth_token_is_a_bearer_token(plain: Store, tmp_path: Path) -> None:
    plain.bearer = "ya29.token"
    env = {"FETCH_BEARER_TOKEN": "ya29.token", "STORAGE_EMULATOR_HOST": plain.url}
    done = run_fetch("gs://bucket/risk/v3/model.joblib", tmp_path / "model.joblib", env)
    assert done.returncode == 0, done.stderr
