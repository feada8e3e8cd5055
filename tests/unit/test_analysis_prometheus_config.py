"""Prometheus connection settings: the auth Secret's formats, the operator's defaults, bad input."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelship import cli
from modelship.analysis.measure import Defaults
from modelship.analysis.prometheus import PrometheusConfig, config_from_secret, operator_default

pytestmark = pytest.mark.unit

ADDRESS = "https://prometheus.monitoring.svc:9090"


def ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_token_secret_gives_a_bearer_token_and_drops_the_trailing_newline() -> None:
    config = config_from_secret(ADDRESS, {"token": "abc.def\n"}, "prom-auth", timeout_seconds=2.5)
    assert config == PrometheusConfig(address=ADDRESS, timeout_seconds=2.5, bearer_token="abc.def")


def test_a_username_and_password_secret_gives_basic_auth_with_a_ca() -> None:
    pem = ca_pem()
    config = config_from_secret(
        ADDRESS, {"username": "ops", "password": "s3cret", "ca.crt": pem}, "prom-auth"
    )
    assert (config.username, config.password, config.bearer_token) == ("ops", "s3cret", None)
    assert config.ca_pem == pem.rstrip("\n") and not config.insecure_skip_verify


def test_a_secret_with_only_a_ca_is_tls_without_credentials() -> None:
    config = config_from_secret(ADDRESS, {"ca.crt": ca_pem()}, "prom-ca")
    assert config.ca_pem and config.bearer_token is None and config.username is None


def test_insecure_skip_verify_is_passed_through() -> None:
    assert config_from_secret(ADDRESS, {"token": "t"}, "s", insecure_skip_verify=True).insecure_skip_verify


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"user": "ops", "password": "x"}, r"Secret 'prom-auth' has key 'user'; expected `token`"),
        ({"username": "ops"}, r"Secret 'prom-auth' has 'username' but no 'password'"),
        ({"password": "x"}, r"Secret 'prom-auth' has 'password' but no 'username'"),
        ({"token": "t", "username": "u", "password": "p"}, r"Secret 'prom-auth' has both 'token'"),
        ({"token": "\n"}, r"Secret 'prom-auth': key 'token' is empty"),
        ({"token": "tök"}, r"Secret 'prom-auth': key 'token' must be ASCII"),
        ({}, r"Secret 'prom-auth' is empty"),
        ({"ca.crt": "not a certificate"}, r"Secret 'prom-auth': the CA bundle is not valid PEM"),
    ],
)
def test_a_bad_secret_is_refused_naming_the_secret_and_the_key(data: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_secret(ADDRESS, data, "prom-auth")


@pytest.mark.parametrize("address", ["prometheus:9090", "ftp://p:21", "http://", ""])
def test_an_address_that_is_not_an_http_url_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="must look like http"):
        PrometheusConfig(address=address)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("inf"), float("nan")])
def test_a_timeout_must_be_a_positive_number(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        PrometheusConfig(address=ADDRESS, timeout_seconds=timeout)


def test_a_config_refuses_half_a_basic_auth_pair_and_two_kinds_of_auth() -> None:
    with pytest.raises(ValueError, match="both username and password"):
        PrometheusConfig(address=ADDRESS, username="u")
    with pytest.raises(ValueError, match="not both"):
        PrometheusConfig(address=ADDRESS, bearer_token="t", username="u", password="p")


def test_operator_default_reads_the_helm_env_and_treats_empty_as_unset() -> None:
    env = {"MODELSHIP_PROMETHEUS_ADDRESS": "http://p:9090", "MODELSHIP_PROMETHEUS_AUTH_SECRET": "prom-auth"}
    assert operator_default(env) == ("http://p:9090", "prom-auth")
    assert operator_default({"MODELSHIP_PROMETHEUS_ADDRESS": "", "OTHER": "x"}) == (None, None)


def test_run_flags_win_over_the_env_and_the_namespace_comes_from_pod_namespace() -> None:
    env = {
        "MODELSHIP_PROMETHEUS_ADDRESS": "http://env:9090",
        "MODELSHIP_PROMETHEUS_AUTH_SECRET": "env-secret",
        "POD_NAMESPACE": "modelship-system",
    }
    flags = cli._parser().parse_args(
        ["run", "--prometheus-address", "http://flag:9090", "--prometheus-auth-secret", "flag-secret"]
    )
    assert cli.prometheus_settings(flags, env) == Defaults(
        "http://flag:9090", "flag-secret", "modelship-system"
    )
    assert cli.prometheus_settings(cli._parser().parse_args(["run"]), env) == Defaults(
        "http://env:9090", "env-secret", "modelship-system"
    )
    assert cli.prometheus_settings(cli._parser().parse_args(["run"]), {}) == Defaults()


def test_a_bad_prometheus_address_stops_run_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--prometheus-address", "prometheus:9090"]) == 2
    assert "--prometheus-address (or $MODELSHIP_PROMETHEUS_ADDRESS)" in capsys.readouterr().err
