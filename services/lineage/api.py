"""LineageService: the lineage of one deal (services/lineage/reader.py), over gRPC and REST
(`GET /v1/lineage?name=…`). Hosted where the orchestration is (beside orders); any
authenticated system may read it."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from syncmesh.lineage.v1 import lineage_pb2 as pb
from syncmesh.lineage.v1 import lineage_pb2_grpc as pb_grpc

from services.lineage.reader import LineageReader, LineageRecord
from services.platform.db import Database
from services.platform.ownership import OwnershipPolicy
from services.platform.protoconv import timestamp
from services.platform.settings import Settings

FULL_NAME = pb.DESCRIPTOR.services_by_name["LineageService"].full_name


def to_proto(record: LineageRecord, policy_version: str) -> pb.Lineage:
    saga, quote = record.saga, record.quote
    ref = quote.external_references[0] if quote.external_references else None
    steps = [
        pb.LineageStep(
            name=step.name,
            state=f"SAGA_STEP_STATE_{step.state}",
            attempts=step.attempts,
            reason=step.reason,
            message=step.message,
            update_time=timestamp(step.updated_at),
            documents=[
                pb.LineageDocument(
                    system=str(d.get("system", "")),
                    object_type=str(d.get("object_type", "")),
                    external_id=str(d.get("external_id", "")),
                    canonical=str(d.get("canonical", "")),
                    extra={str(k): str(v) for k, v in dict(d.get("extra") or {}).items()},
                )
                for d in step.documents
            ],
        )
        for step in saga.steps
    ]
    return pb.Lineage(
        saga=saga.name,
        state=f"SAGA_STATE_{saga.state}",
        reason=saga.reason,
        quote=pb.LineageQuote(
            name=saga.quote_name,
            external_system=ref.system if ref else "",
            external_id=ref.external_id if ref else "",
            customer=saga.customer,
            order=saga.order,
        ),
        events=[
            pb.LineageEvent(
                id=e.id,
                type=e.type,
                subject=e.subject,
                sequence=e.sequence,
                time=timestamp(e.time),
                published=e.published,
                applied_by=e.applied_by,
                trace_id=e.trace_id,
            )
            for e in record.events
        ],
        steps=steps,
        mappings=[
            pb.MappingUse(
                line_id=m.line_id,
                product=m.product,
                target_system=m.target_system,
                mapping=m.mapping,
                mapping_version=m.mapping_version,
                external_id=m.external_id,
            )
            for m in record.mappings
        ],
        policy_version=policy_version,
        conflict_policy_versions=record.conflict_policy_versions,
        objects=record.objects,
        create_time=timestamp(saga.create_time),
        update_time=timestamp(saga.update_time),
    )


class LineageServicer(pb_grpc.LineageServiceServicer):
    def __init__(self, reader: LineageReader, policy_version: str) -> None:
        self.reader = reader
        self.policy_version = policy_version

    async def GetLineage(
        self, request: pb.GetLineageRequest, context: grpc.aio.ServicerContext
    ) -> pb.Lineage:
        return to_proto(await self.reader.lineage(request.name), self.policy_version)


def register(server: grpc.aio.Server, settings: Settings, databases: Mapping[str, Database]) -> LineageReader:
    """Serve LineageService on `server` from the orchestration's database in `databases` (and
    the domain databases there, or opened on first use). Returns the reader, to close."""
    reader = LineageReader(settings, databases["orchestration"], databases)
    policy = OwnershipPolicy.load(settings.ownership_policy)
    pb_grpc.add_LineageServiceServicer_to_server(LineageServicer(reader, policy.version), server)
    return reader
