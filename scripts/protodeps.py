"""Lay out the third-party .proto files our contracts import, from installed wheels.

The googleapis protos come from the `googleapis-common-protos` wheel, the
well-known types from the `grpcio-tools` wheel. They are copied into
`.build/protodeps/` (git-ignored) so that protoc and buf see one local include
root and nothing is fetched from a network registry.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import google.api
import grpc_tools

# Only what the contracts import (transitively). Keep this list short and explicit.
GOOGLEAPIS = [
    "google/api/annotations.proto",
    "google/api/client.proto",
    "google/api/field_behavior.proto",
    "google/api/http.proto",
    "google/api/launch_stage.proto",
    "google/api/resource.proto",
    "google/rpc/code.proto",
    "google/rpc/error_details.proto",
    "google/rpc/status.proto",
    "google/type/date.proto",
    "google/type/money.proto",
    "google/type/postal_address.proto",
]
WELL_KNOWN = [
    "google/protobuf/any.proto",
    "google/protobuf/descriptor.proto",
    "google/protobuf/duration.proto",
    "google/protobuf/empty.proto",
    "google/protobuf/field_mask.proto",
    "google/protobuf/struct.proto",
    "google/protobuf/timestamp.proto",
    "google/protobuf/wrappers.proto",
]


def main(dest: str) -> None:
    out = Path(dest)
    googleapis_root = Path(next(iter(google.api.__path__))).parent.parent
    wkt_root = Path(next(iter(grpc_tools.__path__))) / "_proto"
    for root, files in ((googleapis_root, GOOGLEAPIS), (wkt_root, WELL_KNOWN)):
        for rel in files:
            src = root / rel
            if not src.is_file():
                sys.exit(f"protodeps: {rel} not found under {root}; is the wheel installed?")
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_bytes() != src.read_bytes():
                shutil.copyfile(src, target)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".build/protodeps")
