"""OpsService: operator views across the domain services hosted in this process."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from sqlalchemy import select
from syncmesh.ops.v1 import ops_pb2 as pb
from syncmesh.ops.v1 import ops_pb2_grpc as pb_grpc

from services.platform.db import Database
from services.platform.paging import Cursor, decode_token, encode_token, page_size, parse_filter
from services.platform.protoconv import timestamp
from services.platform.settings import DOMAIN_SERVICES
from services.platform.tables import ownership_conflicts

FULL_NAME = pb.DESCRIPTOR.services_by_name["OpsService"].full_name
_CONFLICT_FILTERS = frozenset({"service", "object_type", "object_name", "field", "source_system"})
# A page position packs (service index, row seq): services are read in a fixed order.
_SEQ_BITS = 48


class OpsServicer(pb_grpc.OpsServiceServicer):
    def __init__(self, databases: Mapping[str, Database]) -> None:
        self.databases = {name: databases[name] for name in DOMAIN_SERVICES if name in databases}

    async def ListOwnershipConflicts(
        self, request: pb.ListOwnershipConflictsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOwnershipConflictsResponse:
        filters = parse_filter(request.filter, _CONFLICT_FILTERS)
        limit = page_size(request.page_size)
        cursor = decode_token(request.page_token, request.filter)
        start = cursor.position if cursor else 0
        found: list[pb.OwnershipConflict] = []
        positions: list[int] = []
        for index, (service, db) in enumerate(self.databases.items()):
            if index < start >> _SEQ_BITS or filters.get("service", service) != service:
                continue
            after = start & ((1 << _SEQ_BITS) - 1) if index == start >> _SEQ_BITS else 0
            query = (
                select(ownership_conflicts)
                .where(ownership_conflicts.c.seq > after)
                .order_by(ownership_conflicts.c.seq)
                .limit(limit + 1 - len(found))
            )
            for key, value in filters.items():
                if key != "service":
                    query = query.where(ownership_conflicts.c[key] == value)
            async with db.transaction() as session:
                rows = (await session.execute(query)).all()
            for row in rows:
                found.append(
                    pb.OwnershipConflict(
                        service=service,
                        object_type=row.object_type,
                        object_name=row.object_name,
                        field=row.field,
                        offered_value=row.offered_value,
                        current_value=row.current_value,
                        source_system=row.source_system,
                        owner_system=row.owner_system,
                        policy_version=row.policy_version,
                        create_time=timestamp(row.create_time),
                    )
                )
                positions.append((index << _SEQ_BITS) | int(row.seq))
            if len(found) > limit:
                break
        token = ""
        if len(found) > limit:
            found = found[:limit]
            token = encode_token(Cursor(positions[limit - 1]), request.filter)
        return pb.ListOwnershipConflictsResponse(conflicts=found, next_page_token=token)


def register(server: grpc.aio.Server, databases: Mapping[str, Database]) -> None:
    pb_grpc.add_OpsServiceServicer_to_server(OpsServicer(databases), server)
