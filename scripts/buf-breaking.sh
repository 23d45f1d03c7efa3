#!/usr/bin/env bash
# `buf breaking` (FILE rules) of protos/ against the contracts of a previous commit.
# The base is $BREAKING_AGAINST, else the previous commit on main (HEAD~1).
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=node_modules/.bin/buf
REF=${BREAKING_AGAINST:-HEAD~1}
if ! git rev-parse --verify --quiet "$REF^{commit}" >/dev/null; then
  echo "buf breaking: no commit $REF to compare with; skipped"; exit 0
fi
if [ -z "$(git ls-tree -r --name-only "$REF" -- protos | grep '\.proto$' || true)" ]; then
  echo "buf breaking: $REF has no contracts yet; skipped"; exit 0
fi
base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
git archive "$REF" protos buf.yaml | tar -x -C "$base"
mkdir -p "$base/.build"
cp -r .build/protodeps "$base/.build/protodeps"
"$BUF" breaking --against "$base"
echo "buf breaking: no breaking change against $(git rev-parse --short "$REF")"
