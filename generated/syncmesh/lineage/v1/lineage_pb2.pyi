import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from syncmesh.orchestration.v1 import orchestration_pb2 as _orchestration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetLineageRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("saga", "state", "reason", "quote", "events", "steps", "mappings", "policy_version", "conflict_policy_versions", "objects", "create_time", "update_time")
    SAGA_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_POLICY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    saga: str
    state: _orchestration_pb2.SagaState
    reason: str
    quote: LineageQuote
    events: _containers.RepeatedCompositeFieldContainer[LineageEvent]
    steps: _containers.RepeatedCompositeFieldContainer[LineageStep]
    mappings: _containers.RepeatedCompositeFieldContainer[MappingUse]
    policy_version: str
    conflict_policy_versions: _containers.RepeatedScalarFieldContainer[str]
    objects: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, saga: _Optional[str] = ..., state: _Optional[_Union[_orchestration_pb2.SagaState, str]] = ..., reason: _Optional[str] = ..., quote: _Optional[_Union[LineageQuote, _Mapping]] = ..., events: _Optional[_Iterable[_Union[LineageEvent, _Mapping]]] = ..., steps: _Optional[_Iterable[_Union[LineageStep, _Mapping]]] = ..., mappings: _Optional[_Iterable[_Union[MappingUse, _Mapping]]] = ..., policy_version: _Optional[str] = ..., conflict_policy_versions: _Optional[_Iterable[str]] = ..., objects: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LineageQuote(_message.Message):
    __slots__ = ("name", "external_system", "external_id", "customer", "order")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    name: str
    external_system: str
    external_id: str
    customer: str
    order: str
    def __init__(self, name: _Optional[str] = ..., external_system: _Optional[str] = ..., external_id: _Optional[str] = ..., customer: _Optional[str] = ..., order: _Optional[str] = ...) -> None: ...

class LineageEvent(_message.Message):
    __slots__ = ("id", "type", "subject", "sequence", "time", "published", "applied_by", "trace_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_BY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    subject: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    published: bool
    applied_by: _containers.RepeatedScalarFieldContainer[str]
    trace_id: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., subject: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published: _Optional[bool] = ..., applied_by: _Optional[_Iterable[str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class LineageStep(_message.Message):
    __slots__ = ("name", "state", "attempts", "reason", "message", "documents", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: _orchestration_pb2.SagaStepState
    attempts: int
    reason: str
    message: str
    documents: _containers.RepeatedCompositeFieldContainer[LineageDocument]
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[_orchestration_pb2.SagaStepState, str]] = ..., attempts: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[LineageDocument, _Mapping]]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LineageDocument(_message.Message):
    __slots__ = ("system", "object_type", "external_id", "canonical", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    system: str
    object_type: str
    external_id: str
    canonical: str
    extra: _containers.ScalarMap[str, str]
    def __init__(self, system: _Optional[str] = ..., object_type: _Optional[str] = ..., external_id: _Optional[str] = ..., canonical: _Optional[str] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class MappingUse(_message.Message):
    __slots__ = ("line_id", "product", "target_system", "mapping", "mapping_version", "external_id")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    MAPPING_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    product: str
    target_system: str
    mapping: str
    mapping_version: int
    external_id: str
    def __init__(self, line_id: _Optional[str] = ..., product: _Optional[str] = ..., target_system: _Optional[str] = ..., mapping: _Optional[str] = ..., mapping_version: _Optional[int] = ..., external_id: _Optional[str] = ...) -> None: ...
