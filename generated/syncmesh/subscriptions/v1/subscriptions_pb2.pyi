import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
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

class BillingTiming(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BILLING_TIMING_UNSPECIFIED: _ClassVar[BillingTiming]
    BILLING_TIMING_IN_ADVANCE: _ClassVar[BillingTiming]
    BILLING_TIMING_IN_ARREARS: _ClassVar[BillingTiming]

class SubscriptionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBSCRIPTION_STATUS_UNSPECIFIED: _ClassVar[SubscriptionStatus]
    SUBSCRIPTION_STATUS_PENDING: _ClassVar[SubscriptionStatus]
    SUBSCRIPTION_STATUS_ACTIVE: _ClassVar[SubscriptionStatus]
    SUBSCRIPTION_STATUS_CANCELLED: _ClassVar[SubscriptionStatus]
    SUBSCRIPTION_STATUS_EXPIRED: _ClassVar[SubscriptionStatus]
BILLING_TIMING_UNSPECIFIED: BillingTiming
BILLING_TIMING_IN_ADVANCE: BillingTiming
BILLING_TIMING_IN_ARREARS: BillingTiming
SUBSCRIPTION_STATUS_UNSPECIFIED: SubscriptionStatus
SUBSCRIPTION_STATUS_PENDING: SubscriptionStatus
SUBSCRIPTION_STATUS_ACTIVE: SubscriptionStatus
SUBSCRIPTION_STATUS_CANCELLED: SubscriptionStatus
SUBSCRIPTION_STATUS_EXPIRED: SubscriptionStatus

class Subscription(_message.Message):
    __slots__ = ("name", "customer", "order", "items", "currency_code", "legal_entity", "term_start_date", "term_end_date", "term_months", "renewal", "status", "billing_schedule", "external_references", "renewal_count", "cancel_reason", "cancel_effective_date", "activate_time", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    TERM_START_DATE_FIELD_NUMBER: _ClassVar[int]
    TERM_END_DATE_FIELD_NUMBER: _ClassVar[int]
    TERM_MONTHS_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BILLING_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    CANCEL_EFFECTIVE_DATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    customer: str
    order: str
    items: _containers.RepeatedCompositeFieldContainer[SubscriptionItem]
    currency_code: str
    legal_entity: str
    term_start_date: _date_pb2.Date
    term_end_date: _date_pb2.Date
    term_months: int
    renewal: RenewalSettings
    status: SubscriptionStatus
    billing_schedule: BillingSchedule
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    renewal_count: int
    cancel_reason: str
    cancel_effective_date: _date_pb2.Date
    activate_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., customer: _Optional[str] = ..., order: _Optional[str] = ..., items: _Optional[_Iterable[_Union[SubscriptionItem, _Mapping]]] = ..., currency_code: _Optional[str] = ..., legal_entity: _Optional[str] = ..., term_start_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., term_end_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., term_months: _Optional[int] = ..., renewal: _Optional[_Union[RenewalSettings, _Mapping]] = ..., status: _Optional[_Union[SubscriptionStatus, str]] = ..., billing_schedule: _Optional[_Union[BillingSchedule, _Mapping]] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., renewal_count: _Optional[int] = ..., cancel_reason: _Optional[str] = ..., cancel_effective_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., activate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class SubscriptionItem(_message.Message):
    __slots__ = ("item_id", "product", "price", "quantity", "unit_price")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    product: str
    price: str
    quantity: int
    unit_price: _money_pb2.Money
    def __init__(self, item_id: _Optional[str] = ..., product: _Optional[str] = ..., price: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[_Union[_money_pb2.Money, _Mapping]] = ...) -> None: ...

class RenewalSettings(_message.Message):
    __slots__ = ("auto_renew", "renewal_term_months")
    AUTO_RENEW_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_TERM_MONTHS_FIELD_NUMBER: _ClassVar[int]
    auto_renew: bool
    renewal_term_months: int
    def __init__(self, auto_renew: _Optional[bool] = ..., renewal_term_months: _Optional[int] = ...) -> None: ...

class BillingSchedule(_message.Message):
    __slots__ = ("billing_frequency", "billing_anchor_date", "billing_timing", "next_billing_date")
    BILLING_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_DATE_FIELD_NUMBER: _ClassVar[int]
    BILLING_TIMING_FIELD_NUMBER: _ClassVar[int]
    NEXT_BILLING_DATE_FIELD_NUMBER: _ClassVar[int]
    billing_frequency: _orders_pb2.BillingFrequency
    billing_anchor_date: _date_pb2.Date
    billing_timing: BillingTiming
    next_billing_date: _date_pb2.Date
    def __init__(self, billing_frequency: _Optional[_Union[_orders_pb2.BillingFrequency, str]] = ..., billing_anchor_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., billing_timing: _Optional[_Union[BillingTiming, str]] = ..., next_billing_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class CreateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription", "request_id")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    request_id: str
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions", "next_page_token")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    next_page_token: str
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription", "update_mask", "request_id")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    subscription: Subscription
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, subscription: _Optional[_Union[Subscription, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelSubscriptionRequest(_message.Message):
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

class RenewSubscriptionRequest(_message.Message):
    __slots__ = ("name", "renewal_term_months", "etag", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_TERM_MONTHS_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    renewal_term_months: int
    etag: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., renewal_term_months: _Optional[int] = ..., etag: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...
