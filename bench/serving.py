"""Serving benchmark: modelserver vs Seldon MLServer vs a tutorial Flask app, same model, same load.

    make bench-serving        # or: python bench/serving.py --bench-python .venv-bench/bin/python

Each server gets CPU 0 and the load generator (bench/loadgen.py) CPU 1 when the machine has two or
more; every server loads the same joblib file and answers predictions with class probabilities.
Results go to bench/results/serving.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES = (1, 32)
TARGET_VS_MLSERVER = 1.5
TARGET_VS_FLASK = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int) -> Callable[[], None] | None:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@dataclass
class Server:
    name: str
    description: str
    argv: list[str]
    env: dict[str, str]
    port: int
    path: str
    body: Callable[[list[list[float]]], dict[str, Any]]
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _predict_body(rows: list[list[float]]) -> dict[str, Any]:
    return {"instances": rows}


def _v2_body(rows: list[list[float]]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP64",
                "data": [v for r in rows for v in r],
            }
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }


def _post(port: int, path: str, body: bytes, timeout: float = 2.0) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (MLServer runs worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)


def _start(server: Server, log: Path, timeout: float) -> float:
    """Start the server; return seconds from spawn to its first successful prediction."""
    probe = json.dumps(server.body([[100.0, 40.0, 5.0, 0.0]])).encode()
    t0 = time.perf_counter()
    with log.open("wb") as out:
        server.proc = subprocess.Popen(
            server.argv,
            env={**os.environ, **server.env},
            cwd=server.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin(0),
            start_new_session=True,  # its own process group, so its workers stop with it
        )
    while time.perf_counter() - t0 < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}; see {log}")
        if _post(server.port, server.path, probe) == 200:
            return round(time.perf_counter() - t0, 3)
        time.sleep(0.02)
    raise RuntimeError(f"{server.name} did not answer a prediction within {timeout}s; see {log}")


def _stop(server: Server) -> None:
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _load(server: Server, rows: list[list[float]], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    body = tmp / f"{server.name}-{len(rows)}.json"
    body.write_text(json.dumps(server.body(rows)))
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "loadgen.py"),
            "--port",
            str(server.port),
            "--path",
            server.path,
            "--body",
            f"@{body}",
            "--connections",
            str(args.connections),
            "--duration",
            str(args.duration),
            "--warmup",
            str(args.warmup),
        ],
        check=True,
        capture_output=True,
        preexec_fn=_pin(1),
        timeout=args.duration + args.warmup + 120,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _mlserver(
    name: str, description: str, bench_python: Path, model_path: Path, tmp: Path, extra: dict[str, Any]
) -> Server:
    root = tmp / name
    (root / "risk").mkdir(parents=True)
    (root / "risk" / "model.joblib").write_bytes(model_path.read_bytes())
    (root / "risk" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "risk",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            }
        )
    )
    port = _free_port()
    (root / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": _free_port(),
                "metrics_port": _free_port(),
                **extra,
            }
        )
    )
    return Server(
        name,
        description,
        [str(bench_python.parent / "mlserver"), "start", str(root)],
        {},
        port,
        "/v2/models/risk/infer",
        _v2_body,
        cwd=root,
    )


def _servers(bench_python: Path, model_path: Path, sha256: str, tmp: Path) -> list[Server]:
    def modelserver(
        name: str,
        description: str,
        path: str,
        body: Callable[..., dict[str, Any]],
        extra: dict[str, str] | None = None,
    ) -> Server:
        port = _free_port()
        env = {
            "MODEL_PATH": str(model_path),
            "MODEL_SHA256": sha256,
            "MODEL_NAME": "risk",
            "MODEL_VERSION": "1",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "warning",
            **(extra or {}),
        }
        return Server(name, description, [sys.executable, "-m", "modelserver"], env, port, path, body)

    flask_port = _free_port()
    return [
        modelserver("modelserver", "POST /predict", "/predict", _predict_body),
        modelserver(
            "modelserver_v2",
            "POST /v2/models/risk/infer (same body as MLServer)",
            "/v2/models/risk/infer",
            _v2_body,
        ),
        modelserver(
            "modelserver_no_fast_path",
            "POST /predict with SKLEARN_FAST_PATH=false (sklearn's own predict_proba)",
            "/predict",
            _predict_body,
            {"SKLEARN_FAST_PATH": "false"},
        ),
        _mlserver(
            "mlserver",
            "Seldon MLServer + mlserver-sklearn, default settings (inference in a worker "
            "process), POST /v2/models/risk/infer",
            bench_python,
            model_path,
            tmp,
            {},
        ),
        _mlserver(
            "mlserver_inprocess",
            "the same with parallel_workers=0 (inference in the server process)",
            bench_python,
            model_path,
            tmp,
            {"parallel_workers": 0},
        ),
        Server(
            "flask",
            "Flask's built-in server, tutorial-style app (bench/flask_app.py), POST /predict",
            [str(bench_python), str(HERE / "flask_app.py")],
            {"MODEL_PATH": str(model_path), "PORT": str(flask_port)},
            flask_port,
            "/predict",
            _predict_body,
        ),
    ]


def _versions(python: Path, modules: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    )
    out = subprocess.run([str(python), "-c", code, *modules], check=True, capture_output=True, text=True)
    result: dict[str, str] = json.loads(out.stdout)
    return result


def _table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (
        f"{'server':<26} {'rows':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x MLS':>6} {'x Flask':>7} "
        f"{'cold s':>7} {'RSS MB':>7}"
    )
    lines = [head, "-" * len(head)]
    for name, by_size in results.items():
        for size, r in by_size.items():
            lines.append(
                f"{name:<26} {size:>4} {r['rps']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                f"{r['ratio_vs_mlserver']:>6.2f} {r['ratio_vs_flask']:>7.2f} {r['cold_start_s']:>7.2f} "
                f"{r['rss_mb']:>7.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--bench-python", type=Path, required=True, help="python of the venv with mlserver and flask"
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "serving.json")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per server and size")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--start-timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    # Absolute (servers run in other directories) but not resolved: the venv's python is a symlink.
    args.bench_python = Path(os.path.abspath(args.bench_python))

    from modelserver.sample_models import dataset, sklearn_bundle

    ours = _versions(Path(sys.executable), ["scikit-learn", "numpy", "joblib", "uvicorn", "orjson"])
    theirs = _versions(
        args.bench_python, ["scikit-learn", "numpy", "joblib", "mlserver", "mlserver-sklearn", "flask"]
    )
    if ours["scikit-learn"] != theirs["scikit-learn"]:
        p.error(
            f"scikit-learn differs: {ours['scikit-learn']} here, {theirs['scikit-learn']} in the bench venv"
        )

    load_before = os.getloadavg()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    descriptions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as t:
        tmp = Path(t)
        bundle = sklearn_bundle(tmp / "model")
        x = dataset()[0]
        for server in _servers(args.bench_python, bundle.model_path, bundle.sha256, tmp):
            descriptions[server.name] = server.description
            print(f"== {server.name}: starting", file=sys.stderr, flush=True)
            try:
                cold = _start(server, tmp / f"{server.name}.log", args.start_timeout)
                per_size: dict[str, dict[str, Any]] = {}
                for n in SIZES:
                    rows = [[round(v, 4) for v in r] for r in x[:n].tolist()]
                    r = _load(server, rows, args, tmp)
                    print(f"   {n:>2} rows: {r}", file=sys.stderr, flush=True)
                    per_size[str(n)] = {
                        "rps": r["rps"],
                        "p50_ms": r["p50_ms"],
                        "p99_ms": r["p99_ms"],
                        "cold_start_s": cold,
                        "requests": r["requests"],
                        "errors": r["errors"],
                    }
                rss = _tree_rss_mb(server.proc.pid) if server.proc else 0.0
                for v in per_size.values():
                    v["rss_mb"] = rss
                results[server.name] = per_size
            finally:
                _stop(server)
    # MLServer is compared in its faster configuration of the two, per request size.
    best_mls = {
        size: max((results[n][size] for n in ("mlserver", "mlserver_inprocess")), key=lambda r: r["rps"])
        for size in results["mlserver"]
    }
    for by_size in results.values():
        for size, r in by_size.items():
            r["ratio_vs_mlserver"] = round(r["rps"] / best_mls[size]["rps"], 2)
            r["ratio_vs_flask"] = round(r["rps"] / results["flask"][size]["rps"], 2)
    ms = results["modelserver"]
    targets = {
        f"{size}_rows": {
            "rps_vs_mlserver": ms[size]["ratio_vs_mlserver"],
            "rps_vs_flask": ms[size]["ratio_vs_flask"],
            "p99_lower_than_mlserver": ms[size]["p99_ms"] < best_mls[size]["p99_ms"],
            "met": ms[size]["ratio_vs_mlserver"] >= TARGET_VS_MLSERVER
            and ms[size]["ratio_vs_flask"] >= TARGET_VS_FLASK
            and ms[size]["p99_ms"] < best_mls[size]["p99_ms"],
        }
        for size in ms
    }
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_before": [round(v, 2) for v in load_before],
            "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        },
        "method": {
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "load_generator": "bench/loadgen.py (closed loop, keep-alive, loopback)",
            "cpu_pinning": "server on CPU 0, load generator on CPU 1" if _pin(0) else "none",
            "cold_start": "seconds from process spawn to the first successful prediction",
            "rss": "resident memory of the server's whole process tree after the load runs",
            "model": "StandardScaler + LogisticRegression, 4 features, 3 classes (modelserver.sample_models)",
        },
        "versions": {"modelserver_venv": ours, "bench_venv": theirs},
        "servers": descriptions,
        "targets": {
            "rps_vs_mlserver": TARGET_VS_MLSERVER,
            "rps_vs_flask": TARGET_VS_FLASK,
            "ratio_base": "ratio_vs_mlserver divides by the faster of mlserver, mlserver_inprocess per size",
            "check": targets,
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(results))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
