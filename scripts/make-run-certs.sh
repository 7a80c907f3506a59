#!/usr/bin/env bash
# Makes one run's TLS material: a certificate authority (ca.pem, which workers trust with
# --tls-ca) and a server certificate signed by it (cert.pem, key.pem, which `shoal run`,
# `shoal ps` and `shoal replay` serve with --tls-cert/--tls-key) naming every host the servers
# are reached at, plus a random token (token). Give the hosts as DNS names or IP addresses;
# Kubernetes: the headless Service's names (`*.shoal.default.svc.cluster.local`), Slurm: the
# nodes. The CA's key is deleted, so no further certificate can be signed with it.
#
#   scripts/make-run-certs.sh OUT_DIR HOST [HOST…]
#   kubectl create secret generic shoal-tls --from-file=OUT_DIR   # or: the Helm chart's tls.*
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 OUT_DIR HOST [HOST...]  (hosts: DNS names or IP addresses the servers are reached at)" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "error: needs openssl (apt-get install openssl)" >&2; exit 1; }
out="$1"
shift
mkdir -p "$out"
umask 077
sans=""
for host in "$@"; do
  if [[ "$host" =~ ^[0-9.]+$ || "$host" == *:* ]]; then
    sans+="IP:$host,"
  else
    sans+="DNS:$host,"
  fi
done
sans="${sans%,}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=shoal run CA" \
  -keyout "$tmp/ca-key.pem" -out "$out/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$out/key.pem" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$sans" > "$tmp/ext.cnf"
openssl x509 -req -in "$tmp/server.csr" -CA "$out/ca.pem" -CAkey "$tmp/ca-key.pem" -CAcreateserial \
  -CAserial "$tmp/ca.srl" -days 365 -extfile "$tmp/ext.cnf" -out "$out/cert.pem" 2>/dev/null
openssl rand -hex 24 > "$out/token"
echo "wrote $out/ca.pem, $out/cert.pem, $out/key.pem and $out/token (certificate for $sans)"
