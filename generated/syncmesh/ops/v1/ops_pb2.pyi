import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeadLetterState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEAD_LETTER_STATE_UNSPECIFIED: _ClassVar[DeadLetterState]
    DEAD_LETTER_STATE_DEAD: _ClassVar[DeadLetterState]
    DEAD_LETTER_STATE_REPLAYED: _ClassVar[DeadLetterState]
    DEAD_LETTER_STATE_DISCARDED: _ClassVar[DeadLetterState]

class ReplayOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLAY_OUTCOME_UNSPECIFIED: _ClassVar[ReplayOutcome]
    REPLAY_OUTCOME_WOULD_REPLAY: _ClassVar[ReplayOutcome]
    REPLAY_OUTCOME_REPLAYED: _ClassVar[ReplayOutcome]
    REPLAY_OUTCOME_SKIPPED: _ClassVar[ReplayOutcome]
    REPLAY_OUTCOME_FAILED: _ClassVar[ReplayOutcome]
DEAD_LETTER_STATE_UNSPECIFIED: DeadLetterState
DEAD_LETTER_STATE_DEAD: DeadLetterState
DEAD_LETTER_STATE_REPLAYED: DeadLetterState
DEAD_LETTER_STATE_DISCARDED: DeadLetterState
REPLAY_OUTCOME_UNSPECIFIED: ReplayOutcome
REPLAY_OUTCOME_WOULD_REPLAY: ReplayOutcome
REPLAY_OUTCOME_REPLAYED: ReplayOutcome
REPLAY_OUTCOME_SKIPPED: ReplayOutcome
REPLAY_OUTCOME_FAILED: ReplayOutcome

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

class DeadLetter(_message.Message):
    __slots__ = ("name", "consumer", "event_id", "event_source", "event_type", "aggregate", "sequence", "reason", "last_error", "attempts", "subject", "stream", "stream_sequence", "state", "dead_time", "resolve_time", "resolution", "replays")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEAD_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    REPLAYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    consumer: str
    event_id: str
    event_source: str
    event_type: str
    aggregate: str
    sequence: int
    reason: str
    last_error: str
    attempts: int
    subject: str
    stream: str
    stream_sequence: int
    state: DeadLetterState
    dead_time: _timestamp_pb2.Timestamp
    resolve_time: _timestamp_pb2.Timestamp
    resolution: str
    replays: int
    def __init__(self, name: _Optional[str] = ..., consumer: _Optional[str] = ..., event_id: _Optional[str] = ..., event_source: _Optional[str] = ..., event_type: _Optional[str] = ..., aggregate: _Optional[str] = ..., sequence: _Optional[int] = ..., reason: _Optional[str] = ..., last_error: _Optional[str] = ..., attempts: _Optional[int] = ..., subject: _Optional[str] = ..., stream: _Optional[str] = ..., stream_sequence: _Optional[int] = ..., state: _Optional[_Union[DeadLetterState, str]] = ..., dead_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolve_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolution: _Optional[str] = ..., replays: _Optional[int] = ...) -> None: ...

class ParkedEvent(_message.Message):
    __slots__ = ("name", "consumer", "event_id", "event_source", "event_type", "aggregate", "sequence", "reason", "waits_for", "detail", "attempts", "failures", "last_error", "park_time", "retry_time", "expire_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAITS_FOR_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    PARK_TIME_FIELD_NUMBER: _ClassVar[int]
    RETRY_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    consumer: str
    event_id: str
    event_source: str
    event_type: str
    aggregate: str
    sequence: int
    reason: str
    waits_for: str
    detail: str
    attempts: int
    failures: int
    last_error: str
    park_time: _timestamp_pb2.Timestamp
    retry_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., consumer: _Optional[str] = ..., event_id: _Optional[str] = ..., event_source: _Optional[str] = ..., event_type: _Optional[str] = ..., aggregate: _Optional[str] = ..., sequence: _Optional[int] = ..., reason: _Optional[str] = ..., waits_for: _Optional[str] = ..., detail: _Optional[str] = ..., attempts: _Optional[int] = ..., failures: _Optional[int] = ..., last_error: _Optional[str] = ..., park_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "next_page_token")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    next_page_token: str
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetDeadLetterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("parent", "names", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    names: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeadLetterReplay(_message.Message):
    __slots__ = ("name", "status", "dead_letter")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: _status_pb2.Status
    dead_letter: DeadLetter
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., dead_letter: _Optional[_Union[DeadLetter, _Mapping]] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("replays",)
    REPLAYS_FIELD_NUMBER: _ClassVar[int]
    replays: _containers.RepeatedCompositeFieldContainer[DeadLetterReplay]
    def __init__(self, replays: _Optional[_Iterable[_Union[DeadLetterReplay, _Mapping]]] = ...) -> None: ...

class DiscardDeadLetterRequest(_message.Message):
    __slots__ = ("name", "reason", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListParkedEventsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListParkedEventsResponse(_message.Message):
    __slots__ = ("parked_events", "next_page_token")
    PARKED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parked_events: _containers.RepeatedCompositeFieldContainer[ParkedEvent]
    next_page_token: str
    def __init__(self, parked_events: _Optional[_Iterable[_Union[ParkedEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReplayEventsRequest(_message.Message):
    __slots__ = ("request_id", "consumer", "event_ids", "subject", "start_time", "end_time", "aggregate", "dry_run")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    consumer: str
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    subject: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    aggregate: str
    dry_run: bool
    def __init__(self, request_id: _Optional[str] = ..., consumer: _Optional[str] = ..., event_ids: _Optional[_Iterable[str]] = ..., subject: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., aggregate: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class EventReplay(_message.Message):
    __slots__ = ("event_id", "event_source", "event_type", "aggregate", "sequence", "subject", "stream_sequence", "event_time", "outcome", "status")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_source: str
    event_type: str
    aggregate: str
    sequence: int
    subject: str
    stream_sequence: int
    event_time: _timestamp_pb2.Timestamp
    outcome: ReplayOutcome
    status: _status_pb2.Status
    def __init__(self, event_id: _Optional[str] = ..., event_source: _Optional[str] = ..., event_type: _Optional[str] = ..., aggregate: _Optional[str] = ..., sequence: _Optional[int] = ..., subject: _Optional[str] = ..., stream_sequence: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[ReplayOutcome, str]] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class ReplayEventsResponse(_message.Message):
    __slots__ = ("consumer", "events", "replayed_count", "skipped_count", "failed_count")
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    events: _containers.RepeatedCompositeFieldContainer[EventReplay]
    replayed_count: int
    skipped_count: int
    failed_count: int
    def __init__(self, consumer: _Optional[str] = ..., events: _Optional[_Iterable[_Union[EventReplay, _Mapping]]] = ..., replayed_count: _Optional[int] = ..., skipped_count: _Optional[int] = ..., failed_count: _Optional[int] = ...) -> None: ...
