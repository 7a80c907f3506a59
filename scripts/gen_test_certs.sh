#!/usr/bin/env bash
# Writes the TLS material the TLS test uses (crates/shoal-dist/tests/fixtures/tls): a test
# certificate authority (ca.pem) and a server certificate for "localhost" signed by it
# (cert.pem, key.pem), valid for 100 years. Test material only: never use these keys elsewhere.
set -euo pipefail
out="$(dirname "$0")/../crates/shoal-dist/tests/fixtures/tls"
mkdir -p "$out"
cd "$out"
openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj "/CN=shoal test CA" \
  -keyout ca-key.pem -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout key.pem -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 36500 \
  -extfile ext.cnf -out cert.pem 2>/dev/null
rm -f server.csr ext.cnf ca-key.pem ca.srl
