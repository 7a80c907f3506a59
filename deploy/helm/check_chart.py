#!/usr/bin/env python3
"""Checks the Shoal Helm chart without a Kubernetes cluster (none can run offline here):

1. lints it strictly (helm's own linter, through helm-python-sdk — no helm binary);
2. renders it and validates every manifest against Kubernetes' schemas
   (kubernetes-validate --strict: unknown fields are errors);
3. runs the rendered pods: for each index of the Indexed Job, the container's command and
   arguments, with the environment that pod gets (its JOB_COMPLETION_INDEX, the chart's
   variables, the headless Service's name of pod 0 mapped to the address of the network
   namespace that plays pod 0), the ConfigMap, Secret and volume mounted as directories, in
   a network namespace of its own on a bridge this script creates (10.77.N.0/24) — then
   evaluates the run directory the pods left on the "volume".

Needs root for step 3 (network namespaces); removes what it creates, stops what it starts by
PID. Usage (what .ci/run does):

    python3 -m venv .venv-helm && .venv-helm/bin/pip install helm-python-sdk kubernetes-validate
    .venv-helm/bin/python deploy/helm/check_chart.py --shoal target/debug/shoal
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import helm_python as helm
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from netns import Namespaces  # noqa: E402  (the repository's scripts/, found from here)

CHART = Path(__file__).resolve().parent / "shoal"
RELEASE = "ci"
TOKEN = "chart-check-token-0123456789"


def lint():
    report = helm.lint(str(CHART), {"secret": {"token": TOKEN}}, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    for message in report["messages"]:
        print(f"lint: severity {message['severity']} {message.get('path', '')}: {message['error'].strip()}")
    if problems:
        raise SystemExit(f"helm lint found {len(problems)} problem(s)")
    # The chart's own checks: a value of the wrong type, TLS without its Secret.
    bad = helm.lint(str(CHART), {"world": "three", "secret": {"token": TOKEN}}, strict=True)
    assert any("world" in e for e in bad["errors"]), f"a string world was accepted: {bad}"
    try:
        helm.Chart.load(str(CHART)).render({"tls": {"enabled": True}}, name=RELEASE)
        raise SystemExit("tls.enabled without a Secret rendered")
    except helm.HelmError as e:
        assert "existingSecret" in str(e), e
    print("lint: ok (and bad values are refused)")


def render(values):
    manifests = helm.Chart.load(str(CHART)).render(values, name=RELEASE, namespace="default")
    docs = []
    for path, text in sorted(manifests.items()):
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs


def validate(docs, workdir):
    files = []
    for i, (path, doc) in enumerate(docs):
        file = workdir / f"manifest-{i}-{Path(path).stem}.yaml"
        file.write_text(yaml.safe_dump(doc))
        files.append(str(file))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", *files],
        capture_output=True,
        text=True,
    )
    print(result.stdout.strip())
    if result.returncode != 0:
        raise SystemExit(f"kubernetes-validate failed:\n{result.stdout}{result.stderr}")
    kinds = sorted(doc["kind"] for _, doc in docs)
    print(f"validate: ok ({', '.join(kinds)})")


def run_pods(docs, shoal, workdir):
    by_kind = {doc["kind"]: doc for _, doc in docs}
    job, config_map, secret = by_kind["Job"], by_kind["ConfigMap"], by_kind["Secret"]
    service = by_kind["Service"]["metadata"]["name"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    world = job["spec"]["completions"]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["parallelism"] == world
    assert pod["subdomain"] == service, "pods must sit under the headless Service for their DNS names"

    # The volumes, as directories: ConfigMap and Secret as files, the PVC as the shared volume.
    sources = {}
    for volume in pod["volumes"]:
        directory = workdir / "volumes" / volume["name"]
        directory.mkdir(parents=True)
        if "configMap" in volume:
            for key, text in config_map["data"].items():
                (directory / key).write_text(text)
        elif "secret" in volume:
            for key, text in secret["stringData"].items():
                (directory / key).write_text(text)
                (directory / key).chmod(0o400)
        sources[volume["name"]] = directory
    mounts = []
    for mount in container["volumeMounts"]:
        source = sources[mount["name"]]
        if "subPath" in mount:
            source = source / mount["subPath"]
        mounts.append((mount["mountPath"], str(source)))
    # Longest mount path first, so /etc/shoal/secret is not taken for /etc/shoal.
    mounts.sort(key=lambda m: -len(m[0]))

    def mapped(arg):
        for path, source in mounts:
            if arg == path or arg.startswith(path + "/"):
                return source + arg[len(path):]
        return arg

    assert container["command"] == ["shoal"], container["command"]
    hosts = Namespaces(world)
    try:
        pod0 = f"{job['metadata']['name']}-0.{service}"
        logs, children = [], []
        for index in range(world):
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "JOB_COMPLETION_INDEX": str(index)}
            for var in container["env"]:
                # The cluster's DNS: the Service's name of pod 0 is namespace 1's address.
                env[var["name"]] = var["value"].replace(pod0, hosts.addr(1))
            argv = [shoal, *[mapped(a) for a in container["args"]]]
            log = open(workdir / f"pod-{index}.log", "w")
            logs.append(log)
            children.append(hosts.spawn(index + 1, argv, env, log))
            if index == 0:
                print("pod 0:", " ".join(argv), "env", json.dumps(env))
        deadline = time.time() + 300
        for index, child in enumerate(children):
            try:
                code = child.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                code = "timeout"
            if code != 0:
                raise SystemExit(f"pod {index} failed ({code}):\n{(workdir / f'pod-{index}.log').read_text()}")
    finally:
        hosts.close()
    run = mapped("/var/lib/shoal/run")
    result = subprocess.run(
        [shoal, "eval", "--deterministic", "--json", "--episodes", "20", run], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"shoal eval of the pods' run directory failed:\n{result.stderr}")
    greedy = json.loads(result.stdout)["episode_return_mean"]
    summary = json.loads(Path(run, "summary.json").read_text())
    print(f"pods: {world} tasks trained {summary['env_steps']} env steps; deterministic eval {greedy}")
    if greedy < 475:
        raise SystemExit(f"the pods' run evaluated {greedy} < 475")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoal", required=True, help="the shoal binary the pods run")
    parser.add_argument("--no-run", action="store_true", help="lint, render and validate only")
    args = parser.parse_args()
    lint()
    workdir = Path(tempfile.mkdtemp(prefix="shoal-chart-"))
    try:
        docs = render({"secret": {"token": TOKEN}})
        validate(docs, workdir)
        tls_docs = render({"secret": {"existingSecret": "run-tls"}, "tls": {"enabled": True}})
        validate(tls_docs, workdir)
        if args.no_run:
            return
        if os.geteuid() != 0:
            raise SystemExit("running the pods needs root (network namespaces); pass --no-run to skip")
        run_pods(docs, str(Path(args.shoal).resolve()), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("chart: ok")


if __name__ == "__main__":
    main()
