"""`shoal bench load` with its servers in a network namespace: every call crosses a veth pair
and a bridge (10.77.N.0/24, scripts/netns.py) instead of loopback, as calls to a server on
another host would, without a NIC's bandwidth limit. Extra arguments go to `shoal bench load`.
The namespace and its bridge are removed afterwards. Needs root.

    sudo python3 bench/load_netns.py --shoal target/release/shoal -- --shards 1 --sizes 10KB,1MB
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from netns import Namespaces  # noqa: E402  (the repository's scripts/)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoal", required=True, help="the shoal binary (a release build)")
    parser.add_argument("rest", nargs="*", help="arguments for `shoal bench load` (after --)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    hosts = Namespaces(1, salt=7)
    try:
        command = [str(Path(args.shoal).resolve()), "bench", "load"]
        command += ["--server-netns", hosts.name(1), "--server-ip", hosts.addr(1), *args.rest]
        print(f"servers in namespace {hosts.name(1)} at {hosts.addr(1)}, workers on this host", flush=True)
        subprocess.run(command, check=True)
    finally:
        hosts.close()


if __name__ == "__main__":
    main()
