#!/usr/bin/env python3
"""MPI_Allreduce against a synchronous parameter-server round and plain TCP, on one host and
with the two ranks in two network namespaces.

Runs `mpirun -np 2 shoal bench allreduce` twice: on this host (Open MPI moves the vectors
through shared memory), and with rank 0 and rank 1 in two namespaces on a bridge of their own
(scripts/netns.py), Open MPI entering them through an rsh agent that wraps nsenter and talking
TCP over the bridge, as between two hosts. Needs root and a `--features mpi` build.

    cargo build --release --features mpi
    sudo python3 bench/allreduce_bench.py --shoal target/release/shoal
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from netns import Namespaces  # noqa: E402  (the repository's scripts/)

# Open MPI 4.1's daemon can crash mapping the topology into shared memory (seen on a CI VM).
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", "--mca", "rtc_hwloc_vmhole", "none"]


def agent_script(hosts, path):
    """An rsh agent for Open MPI: `AGENT [options] HOST COMMAND…` runs COMMAND in HOST's namespace."""
    cases = "".join(f"  {hosts.addr(i)}) ns={hosts.name(i)} ;;\n" for i in (1, 2))
    path.write_text(
        "#!/bin/sh\nwhile [ \"${1#-}\" != \"$1\" ]; do shift; done\nhost=$1; shift\ncase $host in\n"
        + cases
        + "  *) echo \"unknown host $host\" >&2; exit 1 ;;\nesac\nexec nsenter --net=/run/netns/$ns sh -c \"$*\"\n"
    )
    path.chmod(0o755)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoal", required=True, help="the shoal binary (a release build with --features mpi)")
    parser.add_argument("--seconds", default="2")
    parser.add_argument("--mca", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="an extra Open MPI parameter for both runs, repeatable")
    args = parser.parse_args()
    shoal = os.path.abspath(args.shoal)
    mpirun = MPIRUN + [word for key, value in args.mca for word in ("--mca", key, value)]
    print("# one host", flush=True)
    subprocess.run([*mpirun, shoal, "bench", "allreduce", "--seconds", args.seconds], check=True)
    hosts = Namespaces(2, salt=3)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            agent = Path(tmp) / "nsenter-agent.sh"
            agent_script(hosts, agent)
            subnet = hosts.addr(0).rsplit(".", 1)[0] + ".0/24"
            print("# two namespaces", flush=True)
            subprocess.run(
                [
                    *mpirun,
                    "--host", f"{hosts.addr(1)},{hosts.addr(2)}",
                    "--mca", "plm_rsh_agent", str(agent),
                    "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", subnet,
                    "--mca", "oob_tcp_if_include", subnet,
                    shoal, "bench", "allreduce", "--seconds", args.seconds, "--host", hosts.addr(1),
                ],
                check=True,
            )
    finally:
        hosts.close()


if __name__ == "__main__":
    main()
