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

class BillingFrequency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BILLING_FREQUENCY_UNSPECIFIED: _ClassVar[BillingFrequency]
    BILLING_FREQUENCY_ONE_TIME: _ClassVar[BillingFrequency]
    BILLING_FREQUENCY_MONTHLY: _ClassVar[BillingFrequency]
    BILLING_FREQUENCY_QUARTERLY: _ClassVar[BillingFrequency]
    BILLING_FREQUENCY_SEMI_ANNUAL: _ClassVar[BillingFrequency]
    BILLING_FREQUENCY_ANNUAL: _ClassVar[BillingFrequency]
    BILLING_FREQUENCY_TERM_UPFRONT: _ClassVar[BillingFrequency]

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_UNSPECIFIED: _ClassVar[OrderStatus]
    ORDER_STATUS_DRAFT: _ClassVar[OrderStatus]
    ORDER_STATUS_BOOKED: _ClassVar[OrderStatus]
    ORDER_STATUS_AMENDED: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELLED: _ClassVar[OrderStatus]
    ORDER_STATUS_FULFILLED: _ClassVar[OrderStatus]

class AmendmentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AMENDMENT_KIND_UNSPECIFIED: _ClassVar[AmendmentKind]
    AMENDMENT_KIND_UPSELL: _ClassVar[AmendmentKind]
    AMENDMENT_KIND_DOWNSELL: _ClassVar[AmendmentKind]
    AMENDMENT_KIND_PRICE_CHANGE: _ClassVar[AmendmentKind]
    AMENDMENT_KIND_TERM_EXTENSION: _ClassVar[AmendmentKind]
    AMENDMENT_KIND_CANCELLATION: _ClassVar[AmendmentKind]
BILLING_FREQUENCY_UNSPECIFIED: BillingFrequency
BILLING_FREQUENCY_ONE_TIME: BillingFrequency
BILLING_FREQUENCY_MONTHLY: BillingFrequency
BILLING_FREQUENCY_QUARTERLY: BillingFrequency
BILLING_FREQUENCY_SEMI_ANNUAL: BillingFrequency
BILLING_FREQUENCY_ANNUAL: BillingFrequency
BILLING_FREQUENCY_TERM_UPFRONT: BillingFrequency
ORDER_STATUS_UNSPECIFIED: OrderStatus
ORDER_STATUS_DRAFT: OrderStatus
ORDER_STATUS_BOOKED: OrderStatus
ORDER_STATUS_AMENDED: OrderStatus
ORDER_STATUS_CANCELLED: OrderStatus
ORDER_STATUS_FULFILLED: OrderStatus
AMENDMENT_KIND_UNSPECIFIED: AmendmentKind
AMENDMENT_KIND_UPSELL: AmendmentKind
AMENDMENT_KIND_DOWNSELL: AmendmentKind
AMENDMENT_KIND_PRICE_CHANGE: AmendmentKind
AMENDMENT_KIND_TERM_EXTENSION: AmendmentKind
AMENDMENT_KIND_CANCELLATION: AmendmentKind

class Quote(_message.Message):
    __slots__ = ("name", "customer", "external_references", "opportunity", "currency_code", "legal_entity", "lines", "approval_time", "opportunity_stage", "order", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    OPPORTUNITY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_TIME_FIELD_NUMBER: _ClassVar[int]
    OPPORTUNITY_STAGE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    customer: str
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    opportunity: _common_pb2.ExternalReference
    currency_code: str
    legal_entity: str
    lines: _containers.RepeatedCompositeFieldContainer[QuoteLine]
    approval_time: _timestamp_pb2.Timestamp
    opportunity_stage: str
    order: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., customer: _Optional[str] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., opportunity: _Optional[_Union[_common_pb2.ExternalReference, _Mapping]] = ..., currency_code: _Optional[str] = ..., legal_entity: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[QuoteLine, _Mapping]]] = ..., approval_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., opportunity_stage: _Optional[str] = ..., order: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QuoteLine(_message.Message):
    __slots__ = ("line_id", "product", "price", "description", "quantity", "unit_price", "discount_percent", "term_months", "billing_frequency", "legal_entity", "start_date")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TERM_MONTHS_FIELD_NUMBER: _ClassVar[int]
    BILLING_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    product: str
    price: str
    description: str
    quantity: int
    unit_price: _money_pb2.Money
    discount_percent: str
    term_months: int
    billing_frequency: BillingFrequency
    legal_entity: str
    start_date: _date_pb2.Date
    def __init__(self, line_id: _Optional[str] = ..., product: _Optional[str] = ..., price: _Optional[str] = ..., description: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discount_percent: _Optional[str] = ..., term_months: _Optional[int] = ..., billing_frequency: _Optional[_Union[BillingFrequency, str]] = ..., legal_entity: _Optional[str] = ..., start_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class SalesOrder(_message.Message):
    __slots__ = ("name", "quote", "customer", "status", "legal_entity", "currency_code", "lines", "totals", "revision", "amendments", "external_references", "cancel_reason", "book_time", "cancel_time", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AMENDMENTS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    BOOK_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    quote: str
    customer: str
    status: OrderStatus
    legal_entity: str
    currency_code: str
    lines: _containers.RepeatedCompositeFieldContainer[OrderLine]
    totals: OrderTotals
    revision: int
    amendments: _containers.RepeatedCompositeFieldContainer[OrderAmendment]
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    cancel_reason: str
    book_time: _timestamp_pb2.Timestamp
    cancel_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., quote: _Optional[str] = ..., customer: _Optional[str] = ..., status: _Optional[_Union[OrderStatus, str]] = ..., legal_entity: _Optional[str] = ..., currency_code: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., totals: _Optional[_Union[OrderTotals, _Mapping]] = ..., revision: _Optional[int] = ..., amendments: _Optional[_Iterable[_Union[OrderAmendment, _Mapping]]] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., cancel_reason: _Optional[str] = ..., book_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class OrderLine(_message.Message):
    __slots__ = ("line_id", "product", "price", "description", "quantity", "unit_price", "discount_percent", "term_months", "billing_frequency", "legal_entity", "start_date", "end_date", "net_amount")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TERM_MONTHS_FIELD_NUMBER: _ClassVar[int]
    BILLING_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    NET_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    product: str
    price: str
    description: str
    quantity: int
    unit_price: _money_pb2.Money
    discount_percent: str
    term_months: int
    billing_frequency: BillingFrequency
    legal_entity: str
    start_date: _date_pb2.Date
    end_date: _date_pb2.Date
    net_amount: _money_pb2.Money
    def __init__(self, line_id: _Optional[str] = ..., product: _Optional[str] = ..., price: _Optional[str] = ..., description: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discount_percent: _Optional[str] = ..., term_months: _Optional[int] = ..., billing_frequency: _Optional[_Union[BillingFrequency, str]] = ..., legal_entity: _Optional[str] = ..., start_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., end_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., net_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class OrderTotals(_message.Message):
    __slots__ = ("list_amount", "discount_amount", "net_amount", "annual_recurring_amount")
    LIST_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    NET_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ANNUAL_RECURRING_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    list_amount: _money_pb2.Money
    discount_amount: _money_pb2.Money
    net_amount: _money_pb2.Money
    annual_recurring_amount: _money_pb2.Money
    def __init__(self, list_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., discount_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., net_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., annual_recurring_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class OrderAmendment(_message.Message):
    __slots__ = ("revision", "kind", "effective_date", "line_ids", "reason", "amend_time")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    LINE_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AMEND_TIME_FIELD_NUMBER: _ClassVar[int]
    revision: int
    kind: AmendmentKind
    effective_date: _date_pb2.Date
    line_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    amend_time: _timestamp_pb2.Timestamp
    def __init__(self, revision: _Optional[int] = ..., kind: _Optional[_Union[AmendmentKind, str]] = ..., effective_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., line_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., amend_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitOrderRequest(_message.Message):
    __slots__ = ("quote", "request_id")
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    quote: Quote
    request_id: str
    def __init__(self, quote: _Optional[_Union[Quote, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[SalesOrder]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[SalesOrder, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AmendOrderRequest(_message.Message):
    __slots__ = ("name", "kind", "lines", "effective_date", "reason", "etag", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: AmendmentKind
    lines: _containers.RepeatedCompositeFieldContainer[OrderLine]
    effective_date: _date_pb2.Date
    reason: str
    etag: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[AmendmentKind, str]] = ..., lines: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., effective_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., reason: _Optional[str] = ..., etag: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("name", "reason", "effective_date", "etag", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    effective_date: _date_pb2.Date
    etag: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ..., effective_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., etag: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetQuoteRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
