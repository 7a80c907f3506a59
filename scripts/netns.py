"""Network namespaces as hosts, for the checks and benchmarks that run Shoal across real
network hops on one machine: `count` namespaces on a bridge of their own (10.77.N.0/24, N from
the PID and `salt`, the bridge at .254 so this host reaches them), every process started in
them stopped by PID and everything removed by `close`. Needs root.
"""

import os
import subprocess


class Namespaces:
    """`count` network namespaces on a bridge of their own; removed by `close`."""

    def __init__(self, count, salt=0):
        pid = os.getpid()
        self.tag = f"n{pid % 100000}s{salt}"
        self.subnet = 100 + (pid * 7 + salt) % 100
        self.count = count
        self.children = []
        self.bridge = f"{self.tag}br"
        self.ip("link", "add", self.bridge, "type", "bridge")
        self.ip("addr", "add", f"10.77.{self.subnet}.254/24", "dev", self.bridge)
        self.ip("link", "set", self.bridge, "up")
        for i in range(1, count + 1):
            ns, outer, inner = self.name(i), self.cable(i), self.inner(i)
            self.ip("netns", "add", ns)
            self.ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self.ip("link", "set", inner, "netns", ns)
            self.ip("link", "set", outer, "master", self.bridge, "up")
            self.ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", inner)
            self.ip("-n", ns, "link", "set", inner, "up")
            self.ip("-n", ns, "link", "set", "lo", "up")

    @staticmethod
    def ip(*args):
        subprocess.run(["ip", *args], check=True)

    def name(self, i):
        return f"{self.tag}h{i}"

    def addr(self, i):
        return f"10.77.{self.subnet}.{i}"

    def spawn(self, i, argv, env, log):
        child = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.name(i)}", *argv],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.children.append(child)
        return child

    def close(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
        for i in range(1, self.count + 1):
            subprocess.run(["ip", "netns", "del", self.name(i)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def cable(self, i):
        """The host side of namespace i's cable."""
        return f"{self.tag}o{i}"

    def inner(self, i):
        """Namespace i's side of its cable."""
        return f"{self.tag}i{i}"

    def run_shoal(self, shoal, config, out, hosts_of_ranks, sets, logs, token):
        """Starts `shoal run CONFIG --out OUT` as one task per rank, rank r in namespace
        `hosts_of_ranks[r]` (rank 0's namespace serves the rendezvous), with `--set` overrides
        `sets`, and waits for every task; returns their exit codes (logs in `logs/`)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SHOAL_TOKEN": token}
        world = len(hosts_of_ranks)
        coordinator = f"{self.addr(hosts_of_ranks[0])}:29400"
        children = []
        for rank, host in enumerate(hosts_of_ranks):
            argv = [shoal, "run", config, "--out", str(out), "--rank", str(rank), "--world", str(world)]
            argv += ["--coordinator", coordinator, "--insecure"]
            for item in sets:
                argv += ["--set", item]
            log = open(os.path.join(logs, f"task-{rank}.log"), "w")
            children.append(self.spawn(host, argv, env, log))
        return [child.wait(timeout=3600) for child in children]

