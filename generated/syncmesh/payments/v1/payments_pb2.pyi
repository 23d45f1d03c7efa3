import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from google.type import money_pb2 as _money_pb2
from syncmesh.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_METHOD_UNSPECIFIED: _ClassVar[PaymentMethod]
    PAYMENT_METHOD_BANK_TRANSFER: _ClassVar[PaymentMethod]
    PAYMENT_METHOD_CARD: _ClassVar[PaymentMethod]
    PAYMENT_METHOD_DIRECT_DEBIT: _ClassVar[PaymentMethod]
    PAYMENT_METHOD_CHECK: _ClassVar[PaymentMethod]
    PAYMENT_METHOD_OTHER: _ClassVar[PaymentMethod]

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_UNAPPLIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PARTIALLY_APPLIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_APPLIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_REVERSED: _ClassVar[PaymentStatus]
PAYMENT_METHOD_UNSPECIFIED: PaymentMethod
PAYMENT_METHOD_BANK_TRANSFER: PaymentMethod
PAYMENT_METHOD_CARD: PaymentMethod
PAYMENT_METHOD_DIRECT_DEBIT: PaymentMethod
PAYMENT_METHOD_CHECK: PaymentMethod
PAYMENT_METHOD_OTHER: PaymentMethod
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_UNAPPLIED: PaymentStatus
PAYMENT_STATUS_PARTIALLY_APPLIED: PaymentStatus
PAYMENT_STATUS_APPLIED: PaymentStatus
PAYMENT_STATUS_REVERSED: PaymentStatus

class Payment(_message.Message):
    __slots__ = ("name", "customer", "amount", "unapplied_amount", "received_date", "method", "payment_reference", "legal_entity", "status", "applications", "external_references", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    UNAPPLIED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_DATE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    APPLICATIONS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    customer: str
    amount: _money_pb2.Money
    unapplied_amount: _money_pb2.Money
    received_date: _date_pb2.Date
    method: PaymentMethod
    payment_reference: str
    legal_entity: str
    status: PaymentStatus
    applications: _containers.RepeatedCompositeFieldContainer[PaymentApplication]
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., customer: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., unapplied_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., received_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., method: _Optional[_Union[PaymentMethod, str]] = ..., payment_reference: _Optional[str] = ..., legal_entity: _Optional[str] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., applications: _Optional[_Iterable[_Union[PaymentApplication, _Mapping]]] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class PaymentApplication(_message.Message):
    __slots__ = ("application_id", "invoice", "amount", "apply_time")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    APPLY_TIME_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    invoice: str
    amount: _money_pb2.Money
    apply_time: _timestamp_pb2.Timestamp
    def __init__(self, application_id: _Optional[str] = ..., invoice: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., apply_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordPaymentRequest(_message.Message):
    __slots__ = ("payment", "request_id")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    payment: Payment
    request_id: str
    def __init__(self, payment: _Optional[_Union[Payment, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetPaymentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPaymentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListPaymentsResponse(_message.Message):
    __slots__ = ("payments", "next_page_token")
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[Payment]
    next_page_token: str
    def __init__(self, payments: _Optional[_Iterable[_Union[Payment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ApplyPaymentRequest(_message.Message):
    __slots__ = ("name", "invoice", "amount", "etag", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    invoice: str
    amount: _money_pb2.Money
    etag: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., invoice: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., etag: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ApplyPaymentResponse(_message.Message):
    __slots__ = ("payment", "application")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    payment: Payment
    application: PaymentApplication
    def __init__(self, payment: _Optional[_Union[Payment, _Mapping]] = ..., application: _Optional[_Union[PaymentApplication, _Mapping]] = ...) -> None: ...
