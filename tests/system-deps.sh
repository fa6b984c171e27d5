#!/usr/bin/env bash
# Install the system programs the test suite runs for real, when they are missing.
# Called by `make test`; idempotent and quiet when everything is present.
set -euo pipefail
missing=()
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }
if ! command -v initdb >/dev/null 2>&1 && [ -z "$(pg_bin)" ]; then missing+=(postgresql); fi
if ! id postgres >/dev/null 2>&1; then missing+=(postgresql); fi
# SoftHSM2 is the PKCS#11 HSM the signer's Pkcs11KeyStore tests run against.
if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -e /usr/lib/softhsm/libsofthsm2.so ]; then missing+=(softhsm2); fi
# Debian's docker-registry (distribution 2.8) is the OCI registry the OCI e2e tests start on loopback.
if ! command -v docker-registry >/dev/null 2>&1; then missing+=(docker-registry); fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${missing[*]} (run as root or install them: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages start services of their own where an init system runs; the tests start their own.
  if [ -x /etc/init.d/docker-registry ]; then /etc/init.d/docker-registry stop >/dev/null 2>&1 || true; fi
  # Debian's postgresql package starts a cluster of its own; the tests start their own.
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true; done
  fi
fi
