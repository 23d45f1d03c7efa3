import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from google.type import money_pb2 as _money_pb2
from syncmesh.catalog.v1 import catalog_pb2 as _catalog_pb2
from syncmesh.common.v1 import common_pb2 as _common_pb2
from syncmesh.customers.v1 import customers_pb2 as _customers_pb2
from syncmesh.invoices.v1 import invoices_pb2 as _invoices_pb2
from syncmesh.orders.v1 import orders_pb2 as _orders_pb2
from syncmesh.payments.v1 import payments_pb2 as _payments_pb2
from syncmesh.subscriptions.v1 import subscriptions_pb2 as _subscriptions_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CloudEvent(_message.Message):
    __slots__ = ("id", "source", "spec_version", "type", "attributes", "binary_data", "text_data", "proto_data")
    class CloudEventAttributeValue(_message.Message):
        __slots__ = ("ce_boolean", "ce_integer", "ce_string", "ce_bytes", "ce_uri", "ce_uri_ref", "ce_timestamp")
        CE_BOOLEAN_FIELD_NUMBER: _ClassVar[int]
        CE_INTEGER_FIELD_NUMBER: _ClassVar[int]
        CE_STRING_FIELD_NUMBER: _ClassVar[int]
        CE_BYTES_FIELD_NUMBER: _ClassVar[int]
        CE_URI_FIELD_NUMBER: _ClassVar[int]
        CE_URI_REF_FIELD_NUMBER: _ClassVar[int]
        CE_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
        ce_boolean: bool
        ce_integer: int
        ce_string: str
        ce_bytes: bytes
        ce_uri: str
        ce_uri_ref: str
        ce_timestamp: _timestamp_pb2.Timestamp
        def __init__(self, ce_boolean: _Optional[bool] = ..., ce_integer: _Optional[int] = ..., ce_string: _Optional[str] = ..., ce_bytes: _Optional[bytes] = ..., ce_uri: _Optional[str] = ..., ce_uri_ref: _Optional[str] = ..., ce_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CloudEvent.CloudEventAttributeValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CloudEvent.CloudEventAttributeValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    BINARY_DATA_FIELD_NUMBER: _ClassVar[int]
    TEXT_DATA_FIELD_NUMBER: _ClassVar[int]
    PROTO_DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    spec_version: str
    type: str
    attributes: _containers.MessageMap[str, CloudEvent.CloudEventAttributeValue]
    binary_data: bytes
    text_data: str
    proto_data: _any_pb2.Any
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., spec_version: _Optional[str] = ..., type: _Optional[str] = ..., attributes: _Optional[_Mapping[str, CloudEvent.CloudEventAttributeValue]] = ..., binary_data: _Optional[bytes] = ..., text_data: _Optional[str] = ..., proto_data: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class QuoteApproved(_message.Message):
    __slots__ = ("quote",)
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    quote: _orders_pb2.Quote
    def __init__(self, quote: _Optional[_Union[_orders_pb2.Quote, _Mapping]] = ...) -> None: ...

class CustomerUpserted(_message.Message):
    __slots__ = ("customer", "created", "changed_fields", "skipped_fields", "origin")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    customer: _customers_pb2.Customer
    created: bool
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    skipped_fields: _containers.RepeatedScalarFieldContainer[str]
    origin: _common_pb2.ChangeOrigin
    def __init__(self, customer: _Optional[_Union[_customers_pb2.Customer, _Mapping]] = ..., created: _Optional[bool] = ..., changed_fields: _Optional[_Iterable[str]] = ..., skipped_fields: _Optional[_Iterable[str]] = ..., origin: _Optional[_Union[_common_pb2.ChangeOrigin, _Mapping]] = ...) -> None: ...

class OrderBooked(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _orders_pb2.SalesOrder
    def __init__(self, order: _Optional[_Union[_orders_pb2.SalesOrder, _Mapping]] = ...) -> None: ...

class OrderAmended(_message.Message):
    __slots__ = ("order", "amendment")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    AMENDMENT_FIELD_NUMBER: _ClassVar[int]
    order: _orders_pb2.SalesOrder
    amendment: _orders_pb2.OrderAmendment
    def __init__(self, order: _Optional[_Union[_orders_pb2.SalesOrder, _Mapping]] = ..., amendment: _Optional[_Union[_orders_pb2.OrderAmendment, _Mapping]] = ...) -> None: ...

class OrderCancelled(_message.Message):
    __slots__ = ("order", "reason", "effective_date")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    order: _orders_pb2.SalesOrder
    reason: str
    effective_date: _date_pb2.Date
    def __init__(self, order: _Optional[_Union[_orders_pb2.SalesOrder, _Mapping]] = ..., reason: _Optional[str] = ..., effective_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class SubscriptionActivated(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _subscriptions_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_subscriptions_pb2.Subscription, _Mapping]] = ...) -> None: ...

class SubscriptionCancelled(_message.Message):
    __slots__ = ("subscription", "reason", "effective_date")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    subscription: _subscriptions_pb2.Subscription
    reason: str
    effective_date: _date_pb2.Date
    def __init__(self, subscription: _Optional[_Union[_subscriptions_pb2.Subscription, _Mapping]] = ..., reason: _Optional[str] = ..., effective_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class ContractRenewed(_message.Message):
    __slots__ = ("subscription", "previous_term_end_date", "automatic")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TERM_END_DATE_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    subscription: _subscriptions_pb2.Subscription
    previous_term_end_date: _date_pb2.Date
    automatic: bool
    def __init__(self, subscription: _Optional[_Union[_subscriptions_pb2.Subscription, _Mapping]] = ..., previous_term_end_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., automatic: _Optional[bool] = ...) -> None: ...

class SubscriptionUpdated(_message.Message):
    __slots__ = ("subscription", "changed_fields", "skipped_fields", "origin")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    subscription: _subscriptions_pb2.Subscription
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    skipped_fields: _containers.RepeatedScalarFieldContainer[str]
    origin: _common_pb2.ChangeOrigin
    def __init__(self, subscription: _Optional[_Union[_subscriptions_pb2.Subscription, _Mapping]] = ..., changed_fields: _Optional[_Iterable[str]] = ..., skipped_fields: _Optional[_Iterable[str]] = ..., origin: _Optional[_Union[_common_pb2.ChangeOrigin, _Mapping]] = ...) -> None: ...

class SubscriptionEnded(_message.Message):
    __slots__ = ("subscription", "end_date")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    subscription: _subscriptions_pb2.Subscription
    end_date: _date_pb2.Date
    def __init__(self, subscription: _Optional[_Union[_subscriptions_pb2.Subscription, _Mapping]] = ..., end_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class InvoiceIssued(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: _invoices_pb2.Invoice
    def __init__(self, invoice: _Optional[_Union[_invoices_pb2.Invoice, _Mapping]] = ...) -> None: ...

class InvoicePosted(_message.Message):
    __slots__ = ("invoice",)
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    invoice: _invoices_pb2.Invoice
    def __init__(self, invoice: _Optional[_Union[_invoices_pb2.Invoice, _Mapping]] = ...) -> None: ...

class CreditMemoIssued(_message.Message):
    __slots__ = ("credit_memo", "invoice")
    CREDIT_MEMO_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    credit_memo: _invoices_pb2.CreditMemo
    invoice: str
    def __init__(self, credit_memo: _Optional[_Union[_invoices_pb2.CreditMemo, _Mapping]] = ..., invoice: _Optional[str] = ...) -> None: ...

class InvoicePaymentRecorded(_message.Message):
    __slots__ = ("invoice", "payment", "amount")
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    invoice: _invoices_pb2.Invoice
    payment: str
    amount: _money_pb2.Money
    def __init__(self, invoice: _Optional[_Union[_invoices_pb2.Invoice, _Mapping]] = ..., payment: _Optional[str] = ..., amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class PaymentPosted(_message.Message):
    __slots__ = ("payment",)
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    payment: _payments_pb2.Payment
    def __init__(self, payment: _Optional[_Union[_payments_pb2.Payment, _Mapping]] = ...) -> None: ...

class PaymentApplied(_message.Message):
    __slots__ = ("payment", "application")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    payment: _payments_pb2.Payment
    application: _payments_pb2.PaymentApplication
    def __init__(self, payment: _Optional[_Union[_payments_pb2.Payment, _Mapping]] = ..., application: _Optional[_Union[_payments_pb2.PaymentApplication, _Mapping]] = ...) -> None: ...

class ProductUpserted(_message.Message):
    __slots__ = ("product", "created", "changed_fields", "origin")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    product: _catalog_pb2.Product
    created: bool
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    origin: _common_pb2.ChangeOrigin
    def __init__(self, product: _Optional[_Union[_catalog_pb2.Product, _Mapping]] = ..., created: _Optional[bool] = ..., changed_fields: _Optional[_Iterable[str]] = ..., origin: _Optional[_Union[_common_pb2.ChangeOrigin, _Mapping]] = ...) -> None: ...

class PriceUpserted(_message.Message):
    __slots__ = ("price", "created", "changed_fields", "origin")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    price: _catalog_pb2.Price
    created: bool
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    origin: _common_pb2.ChangeOrigin
    def __init__(self, price: _Optional[_Union[_catalog_pb2.Price, _Mapping]] = ..., created: _Optional[bool] = ..., changed_fields: _Optional[_Iterable[str]] = ..., origin: _Optional[_Union[_common_pb2.ChangeOrigin, _Mapping]] = ...) -> None: ...

class MappingUpserted(_message.Message):
    __slots__ = ("product_mapping", "price_mapping", "created")
    PRODUCT_MAPPING_FIELD_NUMBER: _ClassVar[int]
    PRICE_MAPPING_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    product_mapping: _catalog_pb2.ProductMapping
    price_mapping: _catalog_pb2.PriceMapping
    created: bool
    def __init__(self, product_mapping: _Optional[_Union[_catalog_pb2.ProductMapping, _Mapping]] = ..., price_mapping: _Optional[_Union[_catalog_pb2.PriceMapping, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class WebhookAccepted(_message.Message):
    __slots__ = ("source", "event_id", "event_type", "occurred_time", "identity", "commands")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_TIME_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    source: str
    event_id: str
    event_type: str
    occurred_time: _timestamp_pb2.Timestamp
    identity: str
    commands: _containers.RepeatedCompositeFieldContainer[CanonicalCommand]
    def __init__(self, source: _Optional[str] = ..., event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., occurred_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identity: _Optional[str] = ..., commands: _Optional[_Iterable[_Union[CanonicalCommand, _Mapping]]] = ...) -> None: ...

class CanonicalCommand(_message.Message):
    __slots__ = ("method", "request", "key", "lookups", "request_json")
    class Lookup(_message.Message):
        __slots__ = ("field", "kind", "reference")
        FIELD_FIELD_NUMBER: _ClassVar[int]
        KIND_FIELD_NUMBER: _ClassVar[int]
        REFERENCE_FIELD_NUMBER: _ClassVar[int]
        field: str
        kind: str
        reference: _common_pb2.ExternalReference
        def __init__(self, field: _Optional[str] = ..., kind: _Optional[str] = ..., reference: _Optional[_Union[_common_pb2.ExternalReference, _Mapping]] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    method: str
    request: _any_pb2.Any
    key: str
    lookups: _containers.RepeatedCompositeFieldContainer[CanonicalCommand.Lookup]
    request_json: str
    def __init__(self, method: _Optional[str] = ..., request: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., key: _Optional[str] = ..., lookups: _Optional[_Iterable[_Union[CanonicalCommand.Lookup, _Mapping]]] = ..., request_json: _Optional[str] = ...) -> None: ...

class RecordFetchRequested(_message.Message):
    __slots__ = ("system", "object_type", "record_ids", "reason", "full_resync", "source", "event_id")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RECORD_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FULL_RESYNC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    system: str
    object_type: str
    record_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    full_resync: bool
    source: str
    event_id: str
    def __init__(self, system: _Optional[str] = ..., object_type: _Optional[str] = ..., record_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., full_resync: _Optional[bool] = ..., source: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...

class SagaCompleted(_message.Message):
    __slots__ = ("saga", "quote", "customer", "order", "documents")
    SAGA_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    saga: str
    quote: str
    customer: str
    order: str
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    def __init__(self, saga: _Optional[str] = ..., quote: _Optional[str] = ..., customer: _Optional[str] = ..., order: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ...) -> None: ...

class SagaCompensated(_message.Message):
    __slots__ = ("saga", "quote", "customer", "order", "reason", "message", "failed_step", "compensated")
    SAGA_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    COMPENSATED_FIELD_NUMBER: _ClassVar[int]
    saga: str
    quote: str
    customer: str
    order: str
    reason: str
    message: str
    failed_step: str
    compensated: bool
    def __init__(self, saga: _Optional[str] = ..., quote: _Optional[str] = ..., customer: _Optional[str] = ..., order: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., failed_step: _Optional[str] = ..., compensated: _Optional[bool] = ...) -> None: ...
