#!/bin/sh
# One-shot: create every certificate, key, passphrase and password the compose stack needs, each in the
# volume of the only services that need it. Idempotent: existing files are kept (delete one to renew it).
#   docker compose -f compose/docker-compose.yml run --rm init-secrets
# Runs as root to own the fresh volumes, then gives every file to uid 10001 (the image's tufnotary user),
# files 0600, directories 0700. PUBLIC_HOSTNAME names the
# proxy's certificate (default localhost); replace /secrets/proxy/tls.* with a real certificate in production.
set -eu
umask 077
HOST="${PUBLIC_HOSTNAME:-localhost}"
DAYS="${CERT_DAYS:-825}"
CA=/secrets/ca
mkdir -p "$CA" /secrets/signer /secrets/server /secrets/proxy /secrets/server-db /secrets/signer-db

random() { openssl rand -base64 33 | tr -d '\n/+='; }
keep() { [ -s "$1" ] && echo "kept $1" ; }

# Mutual TLS between the servers and the signer: one private CA, never used for anything else.
if ! keep "$CA/ca.crt"; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$CA/ca.key" -out "$CA/ca.crt" \
    -days "$DAYS" -subj "/CN=tufnotary internal CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
fi
issue() {  # issue NAME DIR CN EXT
  [ -s "$2/$1.crt" ] && { echo "kept $2/$1.crt"; return; }
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$2/$1.key" -out "$2/$1.csr" -subj "/CN=$3"
  printf '%s\n' "$4" > "$2/$1.ext"
  openssl x509 -req -in "$2/$1.csr" -CA "$CA/ca.crt" -CAkey "$CA/ca.key" -CAcreateserial -days "$DAYS" \
    -extfile "$2/$1.ext" -out "$2/$1.crt"
  rm -f "$2/$1.csr" "$2/$1.ext"
}
issue signer /secrets/signer tufnotary-signer "subjectAltName=DNS:signer
extendedKeyUsage=serverAuth"
issue client /secrets/server tufnotary-server "extendedKeyUsage=clientAuth"
cp "$CA/ca.crt" /secrets/signer/ca.crt
cp "$CA/ca.crt" /secrets/server/ca.crt

# The public side: a self-signed certificate until you install a real one.
if ! keep /secrets/proxy/tls.crt; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /secrets/proxy/tls.key \
    -out /secrets/proxy/tls.crt -days "$DAYS" -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST"
fi

# The signer's key-wrapping passphrase (losing it loses the online keys: back it up offline).
keep /secrets/signer/passphrase || random > /secrets/signer/passphrase

# Database passwords: the postgres image reads *_FILE; libpq reads the pgpass files (PGPASSFILE).
keep /secrets/server-db/password || random > /secrets/server-db/password
keep /secrets/signer-db/password || random > /secrets/signer-db/password
echo "server-postgres:5432:tufnotary:tufnotary:$(cat /secrets/server-db/password)" > /secrets/server/pgpass
echo "signer-postgres:5432:tufnotary_signer:tufnotary_signer:$(cat /secrets/signer-db/password)" > /secrets/signer/pgpass

# The server's own token issuer (docs/auth.md): its signing key and a users file with one admin.
if ! keep /secrets/server/token.key; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out /secrets/server/token.key
fi
if ! keep /secrets/server/users.toml; then
  random > /secrets/server/admin-password
  python3 -c 'import sys; from pathlib import Path; from tufnotary.server.users import write_user
write_user(Path(sys.argv[1]), "admin", Path(sys.argv[2]).read_text().strip(), ["repository:*:*", "registry:catalog:*"])' \
    /secrets/server/users.toml /secrets/server/admin-password
  echo "admin password: /secrets/server/admin-password (volume server-secrets)"
fi
chmod -R go-rwx /secrets
chown -R 10001:10001 /secrets  # the tufnotary user of the image
chown -R 70:70 /secrets/server-db /secrets/signer-db  # postgres:16-alpine's postgres user reads its password file
echo "secrets ready"
