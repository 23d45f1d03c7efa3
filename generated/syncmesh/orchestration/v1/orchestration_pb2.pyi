import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from google.type import money_pb2 as _money_pb2
from syncmesh.common.v1 import common_pb2 as _common_pb2
from syncmesh.orders.v1 import orders_pb2 as _orders_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SagaKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAGA_KIND_UNSPECIFIED: _ClassVar[SagaKind]
    SAGA_KIND_QUOTE_TO_CASH: _ClassVar[SagaKind]
    SAGA_KIND_AMENDMENT: _ClassVar[SagaKind]
    SAGA_KIND_RENEWAL: _ClassVar[SagaKind]
    SAGA_KIND_CREDIT_MEMO: _ClassVar[SagaKind]

class ContractActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTRACT_ACTION_KIND_UNSPECIFIED: _ClassVar[ContractActionKind]
    CONTRACT_ACTION_KIND_BILLING_ONLY_CHANGE: _ClassVar[ContractActionKind]
    CONTRACT_ACTION_KIND_ERP_ADJUSTMENT_ORDER: _ClassVar[ContractActionKind]
    CONTRACT_ACTION_KIND_CREDIT_MEMO: _ClassVar[ContractActionKind]
    CONTRACT_ACTION_KIND_REVENUE_REVIEW_FLAG: _ClassVar[ContractActionKind]
    CONTRACT_ACTION_KIND_CANCEL_SUBSCRIPTION: _ClassVar[ContractActionKind]
    CONTRACT_ACTION_KIND_EXTEND_TERM: _ClassVar[ContractActionKind]
    CONTRACT_ACTION_KIND_NEEDS_REVIEW: _ClassVar[ContractActionKind]

class SagaState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAGA_STATE_UNSPECIFIED: _ClassVar[SagaState]
    SAGA_STATE_RUNNING: _ClassVar[SagaState]
    SAGA_STATE_WAITING: _ClassVar[SagaState]
    SAGA_STATE_COMPLETED: _ClassVar[SagaState]
    SAGA_STATE_COMPENSATING: _ClassVar[SagaState]
    SAGA_STATE_COMPENSATED: _ClassVar[SagaState]
    SAGA_STATE_FAILED: _ClassVar[SagaState]

class SagaStepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAGA_STEP_STATE_UNSPECIFIED: _ClassVar[SagaStepState]
    SAGA_STEP_STATE_PENDING: _ClassVar[SagaStepState]
    SAGA_STEP_STATE_DONE: _ClassVar[SagaStepState]
    SAGA_STEP_STATE_WAITING: _ClassVar[SagaStepState]
    SAGA_STEP_STATE_FAILED: _ClassVar[SagaStepState]
    SAGA_STEP_STATE_SKIPPED: _ClassVar[SagaStepState]
    SAGA_STEP_STATE_COMPENSATED: _ClassVar[SagaStepState]
SAGA_KIND_UNSPECIFIED: SagaKind
SAGA_KIND_QUOTE_TO_CASH: SagaKind
SAGA_KIND_AMENDMENT: SagaKind
SAGA_KIND_RENEWAL: SagaKind
SAGA_KIND_CREDIT_MEMO: SagaKind
CONTRACT_ACTION_KIND_UNSPECIFIED: ContractActionKind
CONTRACT_ACTION_KIND_BILLING_ONLY_CHANGE: ContractActionKind
CONTRACT_ACTION_KIND_ERP_ADJUSTMENT_ORDER: ContractActionKind
CONTRACT_ACTION_KIND_CREDIT_MEMO: ContractActionKind
CONTRACT_ACTION_KIND_REVENUE_REVIEW_FLAG: ContractActionKind
CONTRACT_ACTION_KIND_CANCEL_SUBSCRIPTION: ContractActionKind
CONTRACT_ACTION_KIND_EXTEND_TERM: ContractActionKind
CONTRACT_ACTION_KIND_NEEDS_REVIEW: ContractActionKind
SAGA_STATE_UNSPECIFIED: SagaState
SAGA_STATE_RUNNING: SagaState
SAGA_STATE_WAITING: SagaState
SAGA_STATE_COMPLETED: SagaState
SAGA_STATE_COMPENSATING: SagaState
SAGA_STATE_COMPENSATED: SagaState
SAGA_STATE_FAILED: SagaState
SAGA_STEP_STATE_UNSPECIFIED: SagaStepState
SAGA_STEP_STATE_PENDING: SagaStepState
SAGA_STEP_STATE_DONE: SagaStepState
SAGA_STEP_STATE_WAITING: SagaStepState
SAGA_STEP_STATE_FAILED: SagaStepState
SAGA_STEP_STATE_SKIPPED: SagaStepState
SAGA_STEP_STATE_COMPENSATED: SagaStepState

class Saga(_message.Message):
    __slots__ = ("name", "quote", "customer", "order", "state", "reason", "message", "current_step", "steps", "create_time", "update_time", "kind", "decisions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    quote: str
    customer: str
    order: str
    state: SagaState
    reason: str
    message: str
    current_step: str
    steps: _containers.RepeatedCompositeFieldContainer[SagaStep]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    kind: SagaKind
    decisions: _containers.RepeatedCompositeFieldContainer[ContractDecision]
    def __init__(self, name: _Optional[str] = ..., quote: _Optional[str] = ..., customer: _Optional[str] = ..., order: _Optional[str] = ..., state: _Optional[_Union[SagaState, str]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., current_step: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[SagaStep, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[SagaKind, str]] = ..., decisions: _Optional[_Iterable[_Union[ContractDecision, _Mapping]]] = ...) -> None: ...

class ContractDecision(_message.Message):
    __slots__ = ("rule", "explanation", "inputs", "actions")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RULE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    rule: str
    explanation: str
    inputs: _containers.ScalarMap[str, str]
    actions: _containers.RepeatedCompositeFieldContainer[ContractAction]
    def __init__(self, rule: _Optional[str] = ..., explanation: _Optional[str] = ..., inputs: _Optional[_Mapping[str, str]] = ..., actions: _Optional[_Iterable[_Union[ContractAction, _Mapping]]] = ...) -> None: ...

class ContractAction(_message.Message):
    __slots__ = ("kind", "line_id", "amount", "quantity", "prorate", "service_start", "service_end", "credit_reason", "reasons")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRORATE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_START_FIELD_NUMBER: _ClassVar[int]
    SERVICE_END_FIELD_NUMBER: _ClassVar[int]
    CREDIT_REASON_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    kind: ContractActionKind
    line_id: str
    amount: _money_pb2.Money
    quantity: int
    prorate: bool
    service_start: _date_pb2.Date
    service_end: _date_pb2.Date
    credit_reason: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[_Union[ContractActionKind, str]] = ..., line_id: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., quantity: _Optional[int] = ..., prorate: _Optional[bool] = ..., service_start: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., service_end: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., credit_reason: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class SagaStep(_message.Message):
    __slots__ = ("name", "state", "attempts", "reason", "message", "documents", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: SagaStepState
    attempts: int
    reason: str
    message: str
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[SagaStepState, str]] = ..., attempts: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartSagaRequest(_message.Message):
    __slots__ = ("request_id", "quote")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    quote: _orders_pb2.Quote
    def __init__(self, request_id: _Optional[str] = ..., quote: _Optional[_Union[_orders_pb2.Quote, _Mapping]] = ...) -> None: ...

class GetSagaRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSagasRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListSagasResponse(_message.Message):
    __slots__ = ("sagas", "next_page_token")
    SAGAS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sagas: _containers.RepeatedCompositeFieldContainer[Saga]
    next_page_token: str
    def __init__(self, sagas: _Optional[_Iterable[_Union[Saga, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
