#!/usr/bin/env bash
# Regenerate proto/signer_pb2*.py from proto/signer.proto so that the generated
# imports read `from tufnotary.proto import ...`.
set -euo pipefail
PY=${1:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tufnotary/proto"
cp "$root/proto/signer.proto" "$tmp/tufnotary/proto/"
"$PY" -m grpc_tools.protoc -I"$tmp" --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  "$tmp/tufnotary/proto/signer.proto"
cp "$tmp"/tufnotary/proto/signer_pb2*.py* "$root/proto/"
echo "regenerated: $(cd "$root" && ls proto/signer_pb2*)"
