"""Pure parts of the Traefik data plane tooling: the wrapper go.mod, the workarounds for what the
module proxy cannot serve, the cache key, Traefik's static config and the Gateway objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import cache, traefik

pytestmark = pytest.mark.unit

HERE = Path(__file__).resolve().parents[2]
MODULE_DIR = Path("/gomod/github.com/traefik/traefik/v3@v3.7.13")

TRAEFIK_GOMOD = """module github.com/traefik/traefik/v3

go 1.26.0

godebug (
	default=go1.26
	x509negativeserial=1
)

require (
	github.com/abbot/go-http-auth v0.0.0-00010101000000-000000000000
	github.com/traefik/traefik/dynamic/ext v0.0.0-00010101000000-000000000000
)

// Dynamic config extension.
replace github.com/traefik/traefik/dynamic/ext => ./pkg/config/dynamic/ext

// Containous forks
replace (
	github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20260804094822-b975dcaa8c48
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59 // a fork
	github.com/example/old v1.0.0 => ../sibling
)

exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
"""


def test_directives_reads_single_lines_and_blocks_without_comments() -> None:
    assert traefik.directives(TRAEFIK_GOMOD, "replace") == [
        "github.com/traefik/traefik/dynamic/ext => ./pkg/config/dynamic/ext",
        "github.com/abbot/go-http-auth => github.com/containous/go-http-auth "
        "v0.4.1-0.20260804094822-b975dcaa8c48",
        "github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59",
        "github.com/example/old v1.0.0 => ../sibling",
    ]
    assert traefik.directives(TRAEFIK_GOMOD, "exclude") == [
        "github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible"
    ]


def test_relative_replaces_point_into_the_module_dir_and_module_replaces_are_kept() -> None:
    assert traefik.replaces(TRAEFIK_GOMOD, MODULE_DIR) == [
        f"github.com/traefik/traefik/dynamic/ext => {MODULE_DIR}/pkg/config/dynamic/ext",
        "github.com/abbot/go-http-auth => github.com/containous/go-http-auth "
        "v0.4.1-0.20260804094822-b975dcaa8c48",
        "github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59",
        "github.com/example/old v1.0.0 => /gomod/github.com/traefik/traefik/sibling",
    ]


def test_overrides_replace_a_target_or_add_a_replace() -> None:
    got = traefik.replaces(
        TRAEFIK_GOMOD,
        MODULE_DIR,
        {
            "github.com/traefik/traefik/dynamic/ext": "/work/stubs/ext",
            "github.com/abbot/go-http-auth": "github.com/containous/go-http-auth v0.4.1-old",
            "github.com/go-acme/lego/v5": "/work/patched/lego",
        },
    )
    assert got[0] == "github.com/traefik/traefik/dynamic/ext => /work/stubs/ext"
    assert got[1] == "github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-old"
    assert got[-1] == "github.com/go-acme/lego/v5 => /work/patched/lego"
    assert len(got) == 5


def test_malformed_replace_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        traefik.replaces("replace github.com/a/b\n", MODULE_DIR)


def test_wrapper_gomod_requires_traefik_and_copies_godebug_replaces_and_excludes() -> None:
    gomod = traefik.wrapper_gomod(TRAEFIK_GOMOD, "v3.7.13", MODULE_DIR)
    lines = gomod.splitlines()
    assert lines[0] == "module modelship.local/devcluster/traefik"
    assert "go 1.26.0" in lines
    assert "godebug default=go1.26" in lines and "godebug x509negativeserial=1" in lines
    assert "require github.com/traefik/traefik/v3 v3.7.13" in lines
    assert f"replace github.com/traefik/traefik/dynamic/ext => {MODULE_DIR}/pkg/config/dynamic/ext" in lines
    assert "exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible" in lines
    assert not any(line.startswith("toolchain") for line in lines)


def test_missing_local_replaces_names_nested_modules_left_out_of_the_zip(tmp_path: Path) -> None:
    gomod = "replace a.example/x => ./x\nreplace b.example/y => ./y\nreplace c.example/z => c.example/z v1\n"
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "go.mod").write_text("module a.example/x\n")
    assert traefik.missing_local_replaces(gomod, tmp_path) == ["b.example/y"]
    assert traefik.module_replaces(gomod) == {"c.example/z": "c.example/z v1"}


def test_the_nested_ext_module_stub_is_a_module_of_that_path() -> None:
    stub = traefik.NESTED_MODULE_STUBS["github.com/traefik/traefik/dynamic/ext"]
    assert stub["go.mod"].startswith("module github.com/traefik/traefik/dynamic/ext\n")
    assert "type HTTP struct{}" in stub["ext.go"] and "type Router struct{}" in stub["ext.go"]


GO_LIST = """{
	"ImportPath": "github.com/go-acme/lego/v5/providers/dns/abion"
}
{
	"ImportPath": "github.com/dnsimple/dnsimple-go/v9/dnsimple",
	"Error": {"Err": "403 Forbidden"}
}
{
	"ImportPath": "github.com/go-acme/lego/v5/providers/dns/dnsimple",
	"DepsErrors": [{"Err": "403 Forbidden"}]
}
{
	"ImportPath": "github.com/go-acme/lego/v5/providers/dns/huaweicloud/internal",
	"DepsErrors": [{"Err": "403 Forbidden"}]
}
{
	"ImportPath": "github.com/go-acme/lego/v5/providers/dns/huaweicloud",
	"DepsErrors": [{"Err": "403 Forbidden"}]
}
"""


def test_dns_providers_that_cannot_load_are_found_from_go_list() -> None:
    packages = traefik.go_list_packages(GO_LIST)
    assert len(packages) == 5
    assert traefik.broken_packages(packages) == ["github.com/dnsimple/dnsimple-go/v9/dnsimple"]
    assert traefik.dropped_dns_providers(packages) == (
        "github.com/go-acme/lego/v5",
        ["dnsimple", "huaweicloud"],
    )
    assert traefik.dropped_dns_providers(packages[:1]) == (None, [])


FACTORY = """package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/providers/dns/abion"
	"github.com/go-acme/lego/v5/providers/dns/dnsimple"
)

func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	switch name {
	case "abion":
		return abion.NewDNSProvider()
	case "dnsimple":
		return dnsimple.NewDNSProvider()
	default:
		return nil, fmt.Errorf("unrecognized DNS provider: %s", name)
	}
}
"""


def test_patch_dns_factory_drops_the_import_and_answers_with_an_error() -> None:
    patched = traefik.patch_dns_factory(FACTORY, "github.com/go-acme/lego/v5", ["dnsimple"])
    assert '"github.com/go-acme/lego/v5/providers/dns/dnsimple"' not in patched
    assert "dnsimple.NewDNSProvider" not in patched
    assert "return abion.NewDNSProvider()" in patched
    assert 'return nil, fmt.Errorf("DNS provider %s: not in this build' in patched
    with pytest.raises(RuntimeError, match="layout changed"):
        traefik.patch_dns_factory(FACTORY, "github.com/go-acme/lego/v5", ["route53"])


def test_cache_dir_is_keyed_by_version_and_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path))
    a, b = traefik.cache_dir("v3.7.13"), traefik.cache_dir("v3.7.12")
    assert a.parent == b.parent == cache.cache_root() == tmp_path / "devcluster"
    assert a.name.startswith("traefik-v3.7.13-") and b.name.startswith("traefik-v3.7.12-")
    assert a != b
    monkeypatch.setattr(traefik, "RECIPE", traefik.RECIPE + "x")
    assert traefik.cache_dir("v3.7.13") != a
    assert traefik.binary(a) == a / "bin" / "traefik"


def test_build_is_a_no_op_when_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "traefik-cached"
    (out / "bin").mkdir(parents=True)
    (out / "bin" / "traefik").write_text("")
    (out / "manifest.json").write_text("{}")

    def no_go(*args: object, **kwargs: object) -> str:
        raise AssertionError("a cached build must not run go")

    monkeypatch.setattr(traefik, "_run", no_go)
    assert traefik.build(out) == out
    assert (out / cache.USED).exists()


def test_versions_env_pins_a_traefik_v3() -> None:
    version = traefik.traefik_version()
    assert version.startswith("v3.") and version.count(".") == 2


def test_ldflags_set_the_version_variable() -> None:
    flags = traefik.ldflags("v3.7.13")
    assert "-X github.com/traefik/traefik/v3/pkg/version.Version=v3.7.13" in flags


def test_print_dir_needs_no_build() -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "hack/devcluster/traefik.py"), "--print-dir"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert Path(done.stdout.strip()).name.startswith(f"traefik-{traefik.traefik_version()}-")


def test_static_config_for_running_out_of_cluster(tmp_path: Path) -> None:
    config = traefik.static_config(18080, 18081, tmp_path / "traefik.log")
    assert config["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert config["entryPoints"] == {
        "web": {"address": "127.0.0.1:18080"},
        "traefik": {"address": "127.0.0.1:18081"},
    }
    assert config["ping"] == {"entryPoint": "traefik"}
    assert "kubernetesGateway" in config["providers"]
    assert config["log"]["filePath"] == str(tmp_path / "traefik.log")
    for off in ("accessLog", "api", "metrics", "tracing", "experimental"):
        assert off not in config
    json.dumps(config)  # plain data, so it serializes to YAML as is


def test_static_config_can_log_the_requests_answered_with_a_5xx_as_json(tmp_path: Path) -> None:
    config = traefik.static_config(18080, 18081, tmp_path / "traefik.log", access_log=tmp_path / "e.jsonl")
    assert config["accessLog"] == {
        "filePath": str(tmp_path / "e.jsonl"),
        "format": "json",
        "filters": {"statusCodes": ["500-599"]},
    }


def test_static_config_extra_address_gets_its_own_port(tmp_path: Path) -> None:
    config = traefik.static_config(18080, 18081, tmp_path / "log", extra=("10.77.0.1", 18082))
    assert config["entryPoints"]["web-extra"] == {"address": "10.77.0.1:18082"}
    assert config["entryPoints"]["web"] == {"address": "127.0.0.1:18080"}
    # Traefik ties a Gateway listener to an entry point by port alone.
    with pytest.raises(ValueError, match="port of its own"):
        traefik.static_config(18080, 18081, tmp_path / "log", extra=("10.77.0.1", 18080))


def test_gateway_class_names_traefiks_controller() -> None:
    gwc = traefik.gateway_class()
    assert gwc["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gwc["kind"] == "GatewayClass"
    assert gwc["spec"] == {"controllerName": "traefik.io/gateway-controller"}


def test_gateway_listener_port_is_the_entry_point_port() -> None:
    gw = traefik.gateway("ns1", 18080)
    assert gw["metadata"] == {"name": "modelship", "namespace": "ns1"}
    assert gw["spec"]["gatewayClassName"] == traefik.gateway_class()["metadata"]["name"]
    assert gw["spec"]["listeners"] == [
        {"name": "web", "protocol": "HTTP", "port": 18080, "allowedRoutes": {"namespaces": {"from": "All"}}}
    ]
    two = traefik.gateway("ns1", 18080, extra_port=18082)["spec"]["listeners"]
    assert [(lst["name"], lst["port"]) for lst in two] == [("web", 18080), ("web-extra", 18082)]


def test_traefik_gateway_follows_its_ports() -> None:
    t = traefik.Traefik(port=18080, ping_port=18081, extra=("10.77.0.1", 18082))
    assert t.url == "http://127.0.0.1:18080"
    assert t.ping_url == "http://127.0.0.1:18081/ping"
    assert [lst["port"] for lst in t.gateway("ns")["spec"]["listeners"]] == [18080, 18082]


def test_condition_true_needs_the_current_generation() -> None:
    def gw(generation: int, observed: int, status: str = "True") -> dict[str, object]:
        cond = {"type": "Programmed", "status": status, "observedGeneration": observed}
        return {"metadata": {"generation": generation}, "status": {"conditions": [cond]}}

    assert traefik.condition_true(gw(2, 2), "Programmed")
    assert not traefik.condition_true(gw(2, 1), "Programmed")
    assert not traefik.condition_true(gw(2, 2, "False"), "Programmed")
    assert not traefik.condition_true(gw(2, 2), "Accepted")
    assert not traefik.condition_true({"metadata": {}}, "Programmed")
