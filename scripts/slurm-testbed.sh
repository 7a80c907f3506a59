#!/usr/bin/env bash
# A 3-node Slurm cluster on this machine, for testing Shoal's sbatch template across real
# network hops: nodes n1, n2, n3 are network namespaces (10.77.0.1-3) on a bridge of their own
# (10.77.0.254, where slurmctld listens), each running its own slurmd; munged authenticates.
# Needs root; installs Debian's slurm-wlm and munge when missing. Everything it starts is
# stopped by PID by `down`, which also removes the namespaces, the bridge and the state.
#
#   scripts/slurm-testbed.sh install # only the packages (what .ci/run does)
#   scripts/slurm-testbed.sh up      # then: export SLURM_CONF=/var/tmp/shoal-slurm/slurm.conf
#   scripts/slurm-testbed.sh down
#
# Why these settings: without systemd there is no cgroup hierarchy to delegate, so processes
# are tracked by /proc (proctrack/linuxproc) and tasks are not bound (task/none); a slurmd is
# started with nsenter --net (not `ip netns exec`, which remounts /sys and breaks slurmd's
# cgroup probe); accounting is off.
set -euo pipefail

STATE=${SHOAL_SLURM_STATE:-/var/tmp/shoal-slurm}
BRIDGE=shoalslurm0
SUBNET=10.77.0
NODES=(n1 n2 n3)
CONF="$STATE/slurm.conf"

ns() { echo "shoal-slurm-$1"; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
    return
  fi
  echo "installing slurm-wlm and munge (Debian packages)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

network_up() {
  ip link add "$BRIDGE" type bridge
  # The bridge's address first, so the host (slurmctld) reaches the nodes from the start.
  ip addr add "$SUBNET.254/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local i=1
  for node in "${NODES[@]}"; do
    ip netns add "$(ns "$node")"
    ip link add "shs-$node" type veth peer name "shs-$node-in"
    ip link set "shs-$node-in" netns "$(ns "$node")"
    ip link set "shs-$node" master "$BRIDGE" up
    ip -n "$(ns "$node")" addr add "$SUBNET.$i/24" dev "shs-$node-in"
    ip -n "$(ns "$node")" link set "shs-$node-in" up
    ip -n "$(ns "$node")" link set lo up
    i=$((i + 1))
  done
}

write_conf() {
  mkdir -p "$STATE/state" "$STATE/log"
  for node in "${NODES[@]}"; do mkdir -p "$STATE/spool/$node"; done
  local cpus
  cpus=$(nproc)
  {
    echo "ClusterName=shoaltest"
    # slurmctld only runs where its name is this host's name.
    echo "SlurmctldHost=$(hostname -s)($SUBNET.254)"
    echo "MailProg=/bin/true"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "MpiDefault=none"
    echo "ReturnToService=2"
    echo "StateSaveLocation=$STATE/state"
    echo "SlurmdSpoolDir=$STATE/spool/%n"
    echo "SlurmctldPidFile=$STATE/slurmctld.pid"
    echo "SlurmdPidFile=$STATE/slurmd-%n.pid"
    echo "SlurmctldLogFile=$STATE/log/slurmctld.log"
    echo "SlurmdLogFile=$STATE/log/slurmd-%n.log"
    echo "SlurmctldPort=6817"
    echo "SlurmdPort=6818"
    echo "KillWait=5"
    local i=1
    for node in "${NODES[@]}"; do
      echo "NodeName=$node NodeAddr=$SUBNET.$i CPUs=$cpus State=UNKNOWN"
      i=$((i + 1))
    done
    echo "PartitionName=debug Nodes=n[1-3] Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES"
  } >"$CONF"
}

start_munge() {
  if [[ -S /run/munge/munge.socket.2 ]] && munge -n </dev/null >/dev/null 2>&1; then
    return # a munged already answers
  fi
  mkdir -p /run/munge
  chown munge:munge /run/munge
  [[ -f /etc/munge/munge.key ]] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged --pid-file="$STATE/munged.pid" 2>/dev/null ||
    runuser -u munge -- /usr/sbin/munged
  # munged writes its pid file where it may: keep ours for `down`.
  pgrep -u munge -n munged >"$STATE/munged.started" || true
}

up() {
  [[ $(id -u) == 0 ]] || { echo "error: the testbed needs root (network namespaces, daemons)" >&2; exit 1; }
  if [[ -d "$STATE" ]]; then
    echo "error: $STATE exists: a testbed is up (run '$0 down' first)" >&2
    exit 1
  fi
  install_packages
  mkdir -p "$STATE"
  network_up
  write_conf
  start_munge
  slurmctld -f "$CONF"
  for node in "${NODES[@]}"; do
    nsenter --net="/run/netns/$(ns "$node")" slurmd -f "$CONF" -N "$node"
  done
  export SLURM_CONF="$CONF"
  for _ in $(seq 1 100); do
    if [[ $(timeout 5 sinfo -h -t idle -o '%D' 2>/dev/null | head -1) == "${#NODES[@]}" ]]; then
      echo "slurm testbed up: nodes ${NODES[*]} idle; export SLURM_CONF=$CONF"
      return
    fi
    sleep 0.2
  done
  echo "error: the nodes did not become idle; see $STATE/log/" >&2
  timeout 5 sinfo >&2 || true
  exit 1
}

stop_pid_file() {
  local file=$1
  [[ -f "$file" ]] || return 0
  local pid
  pid=$(cat "$file")
  if [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

down() {
  if [[ -f "$CONF" ]]; then
    SLURM_CONF="$CONF" scancel --user=root 2>/dev/null || true
  fi
  for node in "${NODES[@]}"; do stop_pid_file "$STATE/slurmd-$node.pid"; done
  stop_pid_file "$STATE/slurmctld.pid"
  stop_pid_file "$STATE/munged.started"
  for node in "${NODES[@]}"; do ip netns del "$(ns "$node")" 2>/dev/null || true; done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$STATE"
  echo "slurm testbed down"
}

case "${1:-}" in
  install) install_packages ;;
  up) up ;;
  down) down ;;
  *) echo "usage: $0 install|up|down" >&2; exit 2 ;;
esac
