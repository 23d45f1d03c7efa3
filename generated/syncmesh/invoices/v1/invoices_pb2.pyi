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

class InvoiceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVOICE_STATUS_UNSPECIFIED: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_DRAFT: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_POSTED: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_PARTIALLY_PAID: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_PAID: _ClassVar[InvoiceStatus]
    INVOICE_STATUS_VOID: _ClassVar[InvoiceStatus]

class CreditMemoReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDIT_MEMO_REASON_UNSPECIFIED: _ClassVar[CreditMemoReason]
    CREDIT_MEMO_REASON_BILLING_ERROR: _ClassVar[CreditMemoReason]
    CREDIT_MEMO_REASON_PRICE_ADJUSTMENT: _ClassVar[CreditMemoReason]
    CREDIT_MEMO_REASON_DOWNSELL: _ClassVar[CreditMemoReason]
    CREDIT_MEMO_REASON_CANCELLATION: _ClassVar[CreditMemoReason]
    CREDIT_MEMO_REASON_GOODWILL: _ClassVar[CreditMemoReason]
    CREDIT_MEMO_REASON_RETURN: _ClassVar[CreditMemoReason]

class CreditMemoStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDIT_MEMO_STATUS_UNSPECIFIED: _ClassVar[CreditMemoStatus]
    CREDIT_MEMO_STATUS_ISSUED: _ClassVar[CreditMemoStatus]
    CREDIT_MEMO_STATUS_POSTED: _ClassVar[CreditMemoStatus]
    CREDIT_MEMO_STATUS_VOID: _ClassVar[CreditMemoStatus]
INVOICE_STATUS_UNSPECIFIED: InvoiceStatus
INVOICE_STATUS_DRAFT: InvoiceStatus
INVOICE_STATUS_POSTED: InvoiceStatus
INVOICE_STATUS_PARTIALLY_PAID: InvoiceStatus
INVOICE_STATUS_PAID: InvoiceStatus
INVOICE_STATUS_VOID: InvoiceStatus
CREDIT_MEMO_REASON_UNSPECIFIED: CreditMemoReason
CREDIT_MEMO_REASON_BILLING_ERROR: CreditMemoReason
CREDIT_MEMO_REASON_PRICE_ADJUSTMENT: CreditMemoReason
CREDIT_MEMO_REASON_DOWNSELL: CreditMemoReason
CREDIT_MEMO_REASON_CANCELLATION: CreditMemoReason
CREDIT_MEMO_REASON_GOODWILL: CreditMemoReason
CREDIT_MEMO_REASON_RETURN: CreditMemoReason
CREDIT_MEMO_STATUS_UNSPECIFIED: CreditMemoStatus
CREDIT_MEMO_STATUS_ISSUED: CreditMemoStatus
CREDIT_MEMO_STATUS_POSTED: CreditMemoStatus
CREDIT_MEMO_STATUS_VOID: CreditMemoStatus

class Invoice(_message.Message):
    __slots__ = ("name", "customer", "order", "subscription", "lines", "currency_code", "subtotal_amount", "tax_amount", "total_amount", "paid_amount", "credited_amount", "open_amount", "status", "invoice_number", "issue_date", "due_date", "legal_entity", "region", "external_references", "post_time", "paid_time", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TAX_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CREDITED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    OPEN_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ISSUE_DATE_FIELD_NUMBER: _ClassVar[int]
    DUE_DATE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    POST_TIME_FIELD_NUMBER: _ClassVar[int]
    PAID_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    customer: str
    order: str
    subscription: str
    lines: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    currency_code: str
    subtotal_amount: _money_pb2.Money
    tax_amount: _money_pb2.Money
    total_amount: _money_pb2.Money
    paid_amount: _money_pb2.Money
    credited_amount: _money_pb2.Money
    open_amount: _money_pb2.Money
    status: InvoiceStatus
    invoice_number: str
    issue_date: _date_pb2.Date
    due_date: _date_pb2.Date
    legal_entity: str
    region: str
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    post_time: _timestamp_pb2.Timestamp
    paid_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., customer: _Optional[str] = ..., order: _Optional[str] = ..., subscription: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., currency_code: _Optional[str] = ..., subtotal_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., total_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., paid_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., credited_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., open_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., status: _Optional[_Union[InvoiceStatus, str]] = ..., invoice_number: _Optional[str] = ..., issue_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., due_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., legal_entity: _Optional[str] = ..., region: _Optional[str] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., post_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paid_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class InvoiceLine(_message.Message):
    __slots__ = ("line_id", "description", "product", "order_line_id", "quantity", "unit_price", "amount", "tax_amount", "service_start_date", "service_end_date")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    ORDER_LINE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TAX_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_START_DATE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_END_DATE_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    description: str
    product: str
    order_line_id: str
    quantity: int
    unit_price: _money_pb2.Money
    amount: _money_pb2.Money
    tax_amount: _money_pb2.Money
    service_start_date: _date_pb2.Date
    service_end_date: _date_pb2.Date
    def __init__(self, line_id: _Optional[str] = ..., description: _Optional[str] = ..., product: _Optional[str] = ..., order_line_id: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., service_start_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., service_end_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class CreditMemo(_message.Message):
    __slots__ = ("name", "customer", "amount", "tax_amount", "reason", "description", "lines", "status", "applied_amount", "unapplied_amount", "credit_memo_number", "external_references", "issue_time", "create_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TAX_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    UNAPPLIED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_MEMO_NUMBER_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    customer: str
    amount: _money_pb2.Money
    tax_amount: _money_pb2.Money
    reason: CreditMemoReason
    description: str
    lines: _containers.RepeatedCompositeFieldContainer[CreditMemoLine]
    status: CreditMemoStatus
    applied_amount: _money_pb2.Money
    unapplied_amount: _money_pb2.Money
    credit_memo_number: str
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    issue_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., customer: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., reason: _Optional[_Union[CreditMemoReason, str]] = ..., description: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[CreditMemoLine, _Mapping]]] = ..., status: _Optional[_Union[CreditMemoStatus, str]] = ..., applied_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., unapplied_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., credit_memo_number: _Optional[str] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., issue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreditMemoLine(_message.Message):
    __slots__ = ("description", "invoice_line_id", "product", "quantity", "amount", "tax_amount")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INVOICE_LINE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TAX_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    description: str
    invoice_line_id: str
    product: str
    quantity: int
    amount: _money_pb2.Money
    tax_amount: _money_pb2.Money
    def __init__(self, description: _Optional[str] = ..., invoice_line_id: _Optional[str] = ..., product: _Optional[str] = ..., quantity: _Optional[int] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., tax_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class CreateInvoiceRequest(_message.Message):
    __slots__ = ("invoice", "request_id")
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    invoice: Invoice
    request_id: str
    def __init__(self, invoice: _Optional[_Union[Invoice, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListInvoicesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListInvoicesResponse(_message.Message):
    __slots__ = ("invoices", "next_page_token")
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    next_page_token: str
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PostInvoiceRequest(_message.Message):
    __slots__ = ("name", "etag", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetInvoiceStatusRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetInvoiceStatusResponse(_message.Message):
    __slots__ = ("name", "status", "invoice_number", "total_amount", "open_amount", "due_date", "overdue", "paid_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    OPEN_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    DUE_DATE_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    PAID_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: InvoiceStatus
    invoice_number: str
    total_amount: _money_pb2.Money
    open_amount: _money_pb2.Money
    due_date: _date_pb2.Date
    overdue: bool
    paid_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[InvoiceStatus, str]] = ..., invoice_number: _Optional[str] = ..., total_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., open_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., due_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., overdue: _Optional[bool] = ..., paid_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class IssueCreditMemoRequest(_message.Message):
    __slots__ = ("parent", "credit_memo", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_MEMO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    credit_memo: CreditMemo
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., credit_memo: _Optional[_Union[CreditMemo, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListCreditMemosRequest(_message.Message):
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

class ListCreditMemosResponse(_message.Message):
    __slots__ = ("credit_memos", "next_page_token")
    CREDIT_MEMOS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    credit_memos: _containers.RepeatedCompositeFieldContainer[CreditMemo]
    next_page_token: str
    def __init__(self, credit_memos: _Optional[_Iterable[_Union[CreditMemo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RecordInvoicePaymentRequest(_message.Message):
    __slots__ = ("invoice", "payment", "customer", "amount", "request_id")
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    invoice: str
    payment: str
    customer: str
    amount: _money_pb2.Money
    request_id: str
    def __init__(self, invoice: _Optional[str] = ..., payment: _Optional[str] = ..., customer: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...
