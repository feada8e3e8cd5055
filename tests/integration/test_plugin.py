"""The kubectl plugin against the real API server: list and get beside `kubectl get`, -A, --context
and --kubeconfig, set image, `status --timeout` as a CI gate (its exit codes through kubectl), the
watch stream (and its re-list on 410 Gone), name completion through kubectl, and the `--watch` view
in a real terminal (tmux).

No operator runs: the tests write the ModelDeployment's status subresource themselves, as the
operator would, so each state is reached at once.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import ExistingCluster
from modelship import plugin
from modelship.kube import storage
from modelship.kube.storage import Storage
from modelship.plugin import watch

from .mdhelpers import crd_installed, create_md, example, kube, md_path, wait_until

__all__ = ["crd_installed", "kube"]
pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent  # kubectl-modelship and kubectl_complete-modelship
DIGEST = "registry.example/modelship/fraud-detector@sha256:" + "e" * 64
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]


def env_of(cluster: ExistingCluster, **extra: str) -> dict[str, str]:
    return {**cluster.env, "PATH": f"{BIN}{os.pathsep}{cluster.env['PATH']}", **extra}


def run(
    cluster: ExistingCluster, *args: str, via_kubectl: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    """`kubectl-modelship ARGS`: in this process (its startup costs a second a call on a busy machine),
    with the cluster's kubeconfig; as a process when `env` is set or `via_kubectl` (`kubectl
    modelship ARGS`: kubectl's own plugin lookup, and its exit code)."""
    if not via_kubectl and not env:
        out, err = io.StringIO(), io.StringIO()
        argv = [*args] if "--kubeconfig" in args else [*args, "--kubeconfig", str(cluster.kubeconfig)]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = plugin.main(argv)
            except SystemExit as exited:  # argparse's usage errors
                code = int(exited.code or 0)
        return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    command = (
        [str(cluster.bin_dir / "kubectl"), "modelship"] if via_kubectl else [str(BIN / "kubectl-modelship")]
    )
    return subprocess.run(
        [*command, *args],
        env=env_of(cluster, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def manifest(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["metadata"]["name"] = name
    doc["spec"]["strategy"] = {"canary": {"steps": STEPS}}
    return doc


def write_status(kube: Storage, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Replace the status as the operator would (observing the current generation)."""
    current = kube.get(md_path(namespace, name))
    assert current is not None
    status = {"observedGeneration": current["metadata"]["generation"], **status}
    patch = storage.merge_patch(current.get("status") or {}, status)
    kube.merge(md_path(namespace, name) + "/status", {"status": patch}, "modelship")


def healthy(revision: str = "fraud-aaa") -> dict[str, Any]:
    return {"phase": "Healthy", "stableRevision": revision, "availableReplicas": 2}


def canary(weight: int, step: int) -> dict[str, Any]:
    return {
        "phase": "Progressing",
        "stableRevision": "fraud-aaa",
        "availableReplicas": 2,
        "rollout": {
            "canary": {"revision": "fraud-bbb", "weight": weight, "actualWeight": weight, "step": step}
        },
    }


DEGRADED = {
    "phase": "Degraded",
    "stableRevision": "fraud-aaa",
    "rollout": {"aborted": {"revision": "fraud-bbb", "reason": "AnalysisFailed"}},
}
ROLLED_BACK = {
    "phase": "RolledBack",
    "stableRevision": "fraud-aaa",
    "rollout": {"rolledBack": {"revision": "fraud-bbb"}},
}


@pytest.fixture
def two(kube: Storage, namespace: str, crd_installed: None) -> list[str]:
    """Two ModelDeployments: `alpha` mid-canary, `beta` Healthy."""
    for name in ("alpha", "beta"):
        create_md(kube, namespace, manifest(name))
    write_status(kube, namespace, "alpha", canary(20, 0))
    write_status(kube, namespace, "beta", healthy())
    return ["alpha", "beta"]


def without_age(text: str) -> list[str]:
    """The lines without their last cell (AGE: the two commands may run a second apart)."""
    return [line.rsplit(" ", 1)[0].rstrip() for line in text.strip().split("\n")]


def test_list_prints_what_kubectl_get_prints_narrow_wide_and_across_namespaces(
    cluster: ExistingCluster, namespace: str, two: list[str]
) -> None:
    for extra in ([], ["-o", "wide"]):
        ours = run(cluster, "list", "-n", namespace, *extra)
        assert ours.returncode == 0, ours.stderr
        theirs = cluster.kubectl("get", "modeldeployments", "-n", namespace, *extra)
        assert without_age(ours.stdout) == without_age(theirs)
        assert ours.stdout.split("\n")[1].startswith("alpha   Progressing   fraud-aaa   fraud-bbb   20 ")
    assert ours.stdout.split("\n")[0].split()[:4] == ["NAME", "PHASE", "STABLE", "CANARY"]
    assert "REQUESTED" in ours.stdout  # -o wide's columns
    # -A: other tests' namespaces may come and go meanwhile; compare this one's rows and the header.
    ours = run(cluster, "list", "-A").stdout.strip().split("\n")
    theirs = cluster.kubectl("get", "modeldeployments", "-A").strip().split("\n")
    assert ours[0].split() == theirs[0].split() == ["NAMESPACE", "NAME", *theirs[0].split()[2:]]
    mine = [line.split()[:4] for line in ours if line.startswith(namespace + " ")]
    assert mine == [line.split()[:4] for line in theirs if line.startswith(namespace + " ")]
    assert [row[1] for row in mine] == two


def test_list_and_get_as_json_yaml_and_name(
    cluster: ExistingCluster, kube: Storage, namespace: str, two: list[str]
) -> None:
    listed = json.loads(run(cluster, "list", "-n", namespace, "-o", "json").stdout)
    assert listed["kind"] == "List" and [o["metadata"]["name"] for o in listed["items"]] == two
    got = yaml.safe_load(run(cluster, "get", "alpha", "-n", namespace, "-o", "yaml").stdout)
    assert got == kube.get(md_path(namespace, "alpha"))
    assert (
        run(cluster, "get", "beta", "-n", namespace, "-o", "name").stdout
        == "modeldeployment.modelship.io/beta\n"
    )
    row = run(cluster, "get", "alpha", "-n", namespace)
    assert without_age(row.stdout) == without_age(cluster.kubectl("get", "md", "alpha", "-n", namespace))
    missing = run(cluster, "get", "gamma", "-n", namespace)
    assert missing.returncode == 4 and 'modeldeployment "gamma" not found' in missing.stderr
    empty = run(cluster, "list", "-n", "kube-public")
    assert (empty.returncode, empty.stdout, empty.stderr) == (
        0,
        "",
        "No resources found in kube-public namespace.\n",
    )


@pytest.fixture
def kubeconfig(cluster: ExistingCluster, namespace: str, tmp_path: Path) -> Path:
    """The cluster's kubeconfig with two contexts: `nowhere` (current; no server answers there) and
    `here` (the cluster, in the test's namespace)."""
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    real = doc["contexts"][0]["context"]
    doc["clusters"].append({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}})
    doc["contexts"] = [
        {"name": "nowhere", "context": {**real, "cluster": "nowhere"}},
        {"name": "here", "context": {**real, "namespace": namespace}},
    ]
    doc["current-context"] = "nowhere"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_context_and_kubeconfig_pick_the_cluster_and_the_contexts_namespace(
    cluster: ExistingCluster, two: list[str], kubeconfig: Path
) -> None:
    by_flag = run(cluster, "list", "--kubeconfig", str(kubeconfig), "--context", "here", "-o", "name")
    assert by_flag.returncode == 0, by_flag.stderr
    assert by_flag.stdout.split() == [f"modeldeployment.modelship.io/{n}" for n in two]
    # $KUBECONFIG, and the flags before the command as kubectl takes them.
    by_env = run(cluster, "--context", "here", "get", "beta", "-o", "name", KUBECONFIG=str(kubeconfig))
    assert by_env.stdout == "modeldeployment.modelship.io/beta\n", by_env.stderr
    current = run(cluster, "list", "--kubeconfig", str(kubeconfig))  # `nowhere`: nothing listens
    assert current.returncode == 4 and "error: cannot reach the API server" in current.stderr
    unknown = run(cluster, "list", "--kubeconfig", str(kubeconfig), "--context", "nope")
    assert unknown.returncode == 4 and '--context: no context "nope"' in unknown.stderr
    no_file = run(cluster, "list", "--kubeconfig", str(kubeconfig.parent / "absent"))
    assert no_file.returncode == 4 and "--kubeconfig: no such file" in no_file.stderr


def test_set_image_patches_image_and_model_checksum_as_kubectl_modelship_and_refuses_a_tag(
    cluster: ExistingCluster, kube: Storage, namespace: str, two: list[str]
) -> None:
    tag = run(
        cluster,
        "set",
        "image",
        "beta",
        "registry.example/fraud:v2",
        "--model-sha256",
        "f" * 64,
        "-n",
        namespace,
    )
    assert tag.returncode == 2 and "IMAGE: spec.image must pin the image by digest" in tag.stderr
    no_sum = run(cluster, "set", "image", "beta", DIGEST, "-n", namespace)
    assert no_sum.returncode == 2 and "--model-sha256 is required: spec.model.sha256" in no_sum.stderr
    before = kube.get(md_path(namespace, "beta"))
    assert before is not None and before["spec"]["image"] != DIGEST

    done = run(cluster, "set", "image", "beta", DIGEST, "--model-sha256", "f" * 64, "-n", namespace)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("modeldeployment.modelship.io/beta image updated\n# Under GitOps")
    assert yaml.safe_load(done.stdout.split("\n", 1)[1])["spec"] == {
        "image": DIGEST,
        "model": {"sha256": "f" * 64},
    }
    after = kube.get(md_path(namespace, "beta"))
    assert after is not None
    assert (after["spec"]["image"], after["spec"]["model"]["sha256"]) == (DIGEST, "f" * 64)
    assert after["spec"]["model"]["name"] == before["spec"]["model"]["name"]  # merged, not replaced
    owned = next(m for m in after["metadata"]["managedFields"] if m["manager"] == "kubectl-modelship")
    assert "f:image" in owned["fieldsV1"]["f:spec"] and "f:sha256" in owned["fieldsV1"]["f:spec"]["f:model"]

    dry = run(
        cluster, "set", "image", "alpha", DIGEST, "--model-sha256", "f" * 64, "--dry-run", "-n", namespace
    )
    assert dry.stdout.startswith("# Under GitOps")
    untouched = kube.get(md_path(namespace, "alpha"))
    assert untouched is not None and untouched["spec"]["image"] != DIGEST


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (healthy("fraud-bbb"), 0, "alpha is Healthy: revision fraud-bbb serves"),
        (DEGRADED, 1, "alpha is Degraded: revision fraud-bbb aborted (AnalysisFailed)"),
        (ROLLED_BACK, 1, "alpha is RolledBack: revision fraud-bbb rolled back"),
        (canary(20, 0), 3, "timed out after 2s: alpha is still Progressing"),
    ],
)
def test_status_timeout_exits_like_a_ci_gate_through_kubectl(
    cluster: ExistingCluster,
    kube: Storage,
    namespace: str,
    two: list[str],
    status: dict[str, Any],
    code: int,
    says: str,
) -> None:
    write_status(kube, namespace, "alpha", status)
    started = time.monotonic()
    gate = run(cluster, "status", "alpha", "-n", namespace, "--timeout", "2s", via_kubectl=True)
    assert gate.returncode == code, gate.stdout + gate.stderr
    assert says in (gate.stdout if code == 0 else gate.stderr)
    assert "Phase:" in gate.stdout  # the view it decided on, for the CI log
    assert time.monotonic() - started < 15


def test_status_timeout_ends_when_the_watch_brings_healthy(
    cluster: ExistingCluster, kube: Storage, namespace: str, two: list[str]
) -> None:
    gate = subprocess.Popen(
        [BIN / "kubectl-modelship", "status", "alpha", "-n", namespace, "--timeout", "60s"],
        env=env_of(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # it has listed, and watches
        assert gate.poll() is None
        write_status(kube, namespace, "alpha", canary(50, 2))
        time.sleep(0.5)
        assert gate.poll() is None  # a change, not the end
        changed = time.monotonic()
        write_status(kube, namespace, "alpha", healthy("fraud-bbb"))
        out, err = gate.communicate(timeout=20)
    finally:
        gate.kill()
    assert gate.returncode == 0, err
    assert time.monotonic() - changed < 5  # streamed: no polling interval to wait out
    assert "alpha is Healthy" in out


def test_the_watch_lists_again_when_its_version_is_gone(
    kube: Storage, namespace: str, two: list[str]
) -> None:
    with pytest.raises(storage.Gone):
        next(kube.watch(md_path(namespace), "1", 5))
    stream = watch.follow(kube, namespace, "beta", deadline=time.monotonic() + 10, resource_version="1")
    first = next(stream)  # after the 410: the object as listed again
    assert first["metadata"]["name"] == "beta" and first["status"]["phase"] == "Healthy"
    write_status(kube, namespace, "beta", canary(20, 0))
    assert next(stream)["status"]["phase"] == "Progressing"  # and the watch goes on from the list


def test_kubectl_completes_modelship_commands_and_names(
    cluster: ExistingCluster, namespace: str, two: list[str]
) -> None:
    """kubectl >= 1.26 runs kubectl_complete-modelship for `kubectl modelship <TAB>`."""

    def complete(*words: str) -> list[str]:
        done = subprocess.run(
            [str(cluster.bin_dir / "kubectl"), "__complete", "modelship", *words],
            env=env_of(cluster),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split("\n")

    commands = complete("st")
    assert "status" in commands and ":4" in commands
    names = complete("status", "-n", namespace, "")
    assert "alpha" in names and "beta" in names


class Tmux:
    """A terminal: a private tmux server (its own socket), one pane of fixed size."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"modelship-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], env=self.env, capture_output=True, text=True, timeout=10
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "t")

    def history(self) -> int:
        return int(self("display-message", "-p", "-t", "t", "#{history_size}"))


@pytest.fixture
def tmux(cluster: ExistingCluster) -> Iterator[Tmux]:
    term = Tmux(env_of(cluster, TERM="xterm-256color"))
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True, timeout=10)


def test_status_watch_redraws_in_place_in_a_real_terminal(
    tmux: Tmux, kube: Storage, namespace: str, two: list[str]
) -> None:
    command = f"{BIN / 'kubectl-modelship'} status alpha -n {namespace} --watch; echo EXIT=$?; sleep 60"
    tmux("new-session", "-d", "-s", "t", "-x", "110", "-y", "40", command)
    wait_until("the first view", lambda: "Weight:     20% canary" in tmux.screen(), timeout=20)
    drawn = tmux.history()

    write_status(kube, namespace, "alpha", canary(50, 2))
    wait_until("the redraw at 50%", lambda: "Weight:     50% canary" in tmux.screen(), timeout=10)
    screen = tmux.screen()
    assert "20% canary" not in screen and screen.count("Name:       alpha") == 1
    assert screen.startswith("Name:       alpha\n")  # drawn from the top, not appended below

    write_status(kube, namespace, "alpha", healthy("fraud-bbb"))
    wait_until("the watch exits 0", lambda: "EXIT=0" in tmux.screen(), timeout=10)
    screen = tmux.screen()
    assert "Phase:      Healthy" in screen and "Phase:      Progressing" not in screen
    assert "alpha is Healthy: revision fraud-bbb serves" in screen
    assert tmux.history() == drawn  # no snapshot went into the scrollback
