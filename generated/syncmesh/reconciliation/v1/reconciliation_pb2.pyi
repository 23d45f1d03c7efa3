import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_STATE_UNSPECIFIED: _ClassVar[ReportState]
    REPORT_STATE_RUNNING: _ClassVar[ReportState]
    REPORT_STATE_SUCCEEDED: _ClassVar[ReportState]
    REPORT_STATE_FAILED: _ClassVar[ReportState]

class ReportTrigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_TRIGGER_UNSPECIFIED: _ClassVar[ReportTrigger]
    REPORT_TRIGGER_ON_DEMAND: _ClassVar[ReportTrigger]
    REPORT_TRIGGER_SCHEDULED: _ClassVar[ReportTrigger]

class DifferenceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIFFERENCE_KIND_UNSPECIFIED: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_MISSING: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_EXTRA: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_MISMATCH: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_MONEY: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_DUPLICATE: _ClassVar[DifferenceKind]
    DIFFERENCE_KIND_MISSED_WEBHOOK: _ClassVar[DifferenceKind]

class HealState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEAL_STATE_UNSPECIFIED: _ClassVar[HealState]
    HEAL_STATE_NONE: _ClassVar[HealState]
    HEAL_STATE_FLAGGED: _ClassVar[HealState]
    HEAL_STATE_WOULD_HEAL: _ClassVar[HealState]
    HEAL_STATE_HEALED: _ClassVar[HealState]
    HEAL_STATE_FAILED: _ClassVar[HealState]
REPORT_STATE_UNSPECIFIED: ReportState
REPORT_STATE_RUNNING: ReportState
REPORT_STATE_SUCCEEDED: ReportState
REPORT_STATE_FAILED: ReportState
REPORT_TRIGGER_UNSPECIFIED: ReportTrigger
REPORT_TRIGGER_ON_DEMAND: ReportTrigger
REPORT_TRIGGER_SCHEDULED: ReportTrigger
DIFFERENCE_KIND_UNSPECIFIED: DifferenceKind
DIFFERENCE_KIND_MISSING: DifferenceKind
DIFFERENCE_KIND_EXTRA: DifferenceKind
DIFFERENCE_KIND_MISMATCH: DifferenceKind
DIFFERENCE_KIND_MONEY: DifferenceKind
DIFFERENCE_KIND_DUPLICATE: DifferenceKind
DIFFERENCE_KIND_MISSED_WEBHOOK: DifferenceKind
HEAL_STATE_UNSPECIFIED: HealState
HEAL_STATE_NONE: HealState
HEAL_STATE_FLAGGED: HealState
HEAL_STATE_WOULD_HEAL: HealState
HEAL_STATE_HEALED: HealState
HEAL_STATE_FAILED: HealState

class ReconciliationReport(_message.Message):
    __slots__ = ("name", "state", "trigger", "object_types", "heal", "dry_run", "current_object_type", "records_read", "summaries", "difference_count", "reason", "message", "create_time", "end_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPES_FIELD_NUMBER: _ClassVar[int]
    HEAL_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CURRENT_OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_READ_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: ReportState
    trigger: ReportTrigger
    object_types: _containers.RepeatedScalarFieldContainer[str]
    heal: bool
    dry_run: bool
    current_object_type: str
    records_read: int
    summaries: _containers.RepeatedCompositeFieldContainer[TypeSummary]
    difference_count: int
    reason: str
    message: str
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[ReportState, str]] = ..., trigger: _Optional[_Union[ReportTrigger, str]] = ..., object_types: _Optional[_Iterable[str]] = ..., heal: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., current_object_type: _Optional[str] = ..., records_read: _Optional[int] = ..., summaries: _Optional[_Iterable[_Union[TypeSummary, _Mapping]]] = ..., difference_count: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TypeSummary(_message.Message):
    __slots__ = ("object_type", "records", "keys", "differences", "skipped_systems", "healed", "flagged", "heal_failed")
    class RecordsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class DifferencesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_SYSTEMS_FIELD_NUMBER: _ClassVar[int]
    HEALED_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    HEAL_FAILED_FIELD_NUMBER: _ClassVar[int]
    object_type: str
    records: _containers.ScalarMap[str, int]
    keys: int
    differences: _containers.ScalarMap[str, int]
    skipped_systems: _containers.RepeatedScalarFieldContainer[str]
    healed: int
    flagged: int
    heal_failed: int
    def __init__(self, object_type: _Optional[str] = ..., records: _Optional[_Mapping[str, int]] = ..., keys: _Optional[int] = ..., differences: _Optional[_Mapping[str, int]] = ..., skipped_systems: _Optional[_Iterable[str]] = ..., healed: _Optional[int] = ..., flagged: _Optional[int] = ..., heal_failed: _Optional[int] = ...) -> None: ...

class Difference(_message.Message):
    __slots__ = ("object_type", "kind", "key", "system", "field", "expected", "actual", "syncmesh_name", "external_id", "action", "heal_state", "heal_detail")
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    SYNCMESH_NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    HEAL_STATE_FIELD_NUMBER: _ClassVar[int]
    HEAL_DETAIL_FIELD_NUMBER: _ClassVar[int]
    object_type: str
    kind: DifferenceKind
    key: str
    system: str
    field: str
    expected: str
    actual: str
    syncmesh_name: str
    external_id: str
    action: str
    heal_state: HealState
    heal_detail: str
    def __init__(self, object_type: _Optional[str] = ..., kind: _Optional[_Union[DifferenceKind, str]] = ..., key: _Optional[str] = ..., system: _Optional[str] = ..., field: _Optional[str] = ..., expected: _Optional[str] = ..., actual: _Optional[str] = ..., syncmesh_name: _Optional[str] = ..., external_id: _Optional[str] = ..., action: _Optional[str] = ..., heal_state: _Optional[_Union[HealState, str]] = ..., heal_detail: _Optional[str] = ...) -> None: ...

class RunReconciliationRequest(_message.Message):
    __slots__ = ("request_id", "object_types", "heal", "dry_run", "webhooks_since")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPES_FIELD_NUMBER: _ClassVar[int]
    HEAL_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    WEBHOOKS_SINCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    object_types: _containers.RepeatedScalarFieldContainer[str]
    heal: bool
    dry_run: bool
    webhooks_since: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., object_types: _Optional[_Iterable[str]] = ..., heal: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., webhooks_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetReconciliationReportRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListReconciliationReportsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListReconciliationReportsResponse(_message.Message):
    __slots__ = ("reconciliation_reports", "next_page_token")
    RECONCILIATION_REPORTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reconciliation_reports: _containers.RepeatedCompositeFieldContainer[ReconciliationReport]
    next_page_token: str
    def __init__(self, reconciliation_reports: _Optional[_Iterable[_Union[ReconciliationReport, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListReconciliationDifferencesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "filter")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    filter: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListReconciliationDifferencesResponse(_message.Message):
    __slots__ = ("differences", "next_page_token")
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    differences: _containers.RepeatedCompositeFieldContainer[Difference]
    next_page_token: str
    def __init__(self, differences: _Optional[_Iterable[_Union[Difference, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
