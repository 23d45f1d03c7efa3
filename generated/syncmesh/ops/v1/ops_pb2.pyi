import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OwnershipConflict(_message.Message):
    __slots__ = ("service", "object_type", "object_name", "field", "offered_value", "current_value", "source_system", "owner_system", "policy_version", "create_time")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OFFERED_VALUE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VALUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    OWNER_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    service: str
    object_type: str
    object_name: str
    field: str
    offered_value: str
    current_value: str
    source_system: str
    owner_system: str
    policy_version: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, service: _Optional[str] = ..., object_type: _Optional[str] = ..., object_name: _Optional[str] = ..., field: _Optional[str] = ..., offered_value: _Optional[str] = ..., current_value: _Optional[str] = ..., source_system: _Optional[str] = ..., owner_system: _Optional[str] = ..., policy_version: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListOwnershipConflictsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListOwnershipConflictsResponse(_message.Message):
    __slots__ = ("conflicts", "next_page_token")
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conflicts: _containers.RepeatedCompositeFieldContainer[OwnershipConflict]
    next_page_token: str
    def __init__(self, conflicts: _Optional[_Iterable[_Union[OwnershipConflict, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
