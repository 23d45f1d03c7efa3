#!/usr/bin/env bash
# The one script that produces generated/ from protos/. Never hand-edit generated/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEPS=.build/protodeps
"$PY" scripts/protodeps.py "$DEPS"
rm -rf generated/syncmesh
mkdir -p generated
mapfile -t PROTOS < <(cd protos && find syncmesh -name '*.proto' | LC_ALL=C sort)
"$PY" -m grpc_tools.protoc -I protos -I "$DEPS" \
  --python_out=generated --pyi_out=generated --grpc_python_out=generated \
  "${PROTOS[@]}"
# Regular packages (not namespace packages) so tools and installers find them.
find generated/syncmesh -type d | LC_ALL=C sort | while read -r d; do : > "$d/__init__.py"; done
