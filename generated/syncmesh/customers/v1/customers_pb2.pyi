import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import money_pb2 as _money_pb2
from google.type import postal_address_pb2 as _postal_address_pb2
from syncmesh.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ContactRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTACT_ROLE_UNSPECIFIED: _ClassVar[ContactRole]
    CONTACT_ROLE_BILLING: _ClassVar[ContactRole]
    CONTACT_ROLE_LEGAL: _ClassVar[ContactRole]
    CONTACT_ROLE_PRIMARY: _ClassVar[ContactRole]
CONTACT_ROLE_UNSPECIFIED: ContactRole
CONTACT_ROLE_BILLING: ContactRole
CONTACT_ROLE_LEGAL: ContactRole
CONTACT_ROLE_PRIMARY: ContactRole

class Customer(_message.Message):
    __slots__ = ("name", "legal_name", "legal_entity", "billing_address", "shipping_address", "tax_ids", "payment_terms", "currency_code", "credit_limit", "contacts", "region", "external_references", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEGAL_NAME_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    BILLING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAX_IDS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_TERMS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    legal_name: str
    legal_entity: str
    billing_address: _postal_address_pb2.PostalAddress
    shipping_address: _postal_address_pb2.PostalAddress
    tax_ids: _containers.RepeatedCompositeFieldContainer[TaxId]
    payment_terms: str
    currency_code: str
    credit_limit: _money_pb2.Money
    contacts: _containers.RepeatedCompositeFieldContainer[Contact]
    region: str
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., legal_name: _Optional[str] = ..., legal_entity: _Optional[str] = ..., billing_address: _Optional[_Union[_postal_address_pb2.PostalAddress, _Mapping]] = ..., shipping_address: _Optional[_Union[_postal_address_pb2.PostalAddress, _Mapping]] = ..., tax_ids: _Optional[_Iterable[_Union[TaxId, _Mapping]]] = ..., payment_terms: _Optional[str] = ..., currency_code: _Optional[str] = ..., credit_limit: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., contacts: _Optional[_Iterable[_Union[Contact, _Mapping]]] = ..., region: _Optional[str] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class TaxId(_message.Message):
    __slots__ = ("type", "value", "country_code")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_CODE_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    country_code: str
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ..., country_code: _Optional[str] = ...) -> None: ...

class Contact(_message.Message):
    __slots__ = ("display_name", "email", "phone", "role")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    email: str
    phone: str
    role: ContactRole
    def __init__(self, display_name: _Optional[str] = ..., email: _Optional[str] = ..., phone: _Optional[str] = ..., role: _Optional[_Union[ContactRole, str]] = ...) -> None: ...

class CreateCustomerRequest(_message.Message):
    __slots__ = ("customer", "request_id")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    request_id: str
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetCustomerRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateCustomerRequest(_message.Message):
    __slots__ = ("customer", "update_mask", "request_id")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListCustomersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListCustomersResponse(_message.Message):
    __slots__ = ("customers", "next_page_token")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[Customer]
    next_page_token: str
    def __init__(self, customers: _Optional[_Iterable[_Union[Customer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class LookupCustomerRequest(_message.Message):
    __slots__ = ("external_reference",)
    EXTERNAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    external_reference: _common_pb2.ExternalReference
    def __init__(self, external_reference: _Optional[_Union[_common_pb2.ExternalReference, _Mapping]] = ...) -> None: ...

class UpsertCustomerRequest(_message.Message):
    __slots__ = ("external_reference", "customer", "update_mask", "request_id")
    EXTERNAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    external_reference: _common_pb2.ExternalReference
    customer: Customer
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, external_reference: _Optional[_Union[_common_pb2.ExternalReference, _Mapping]] = ..., customer: _Optional[_Union[Customer, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpsertCustomerResponse(_message.Message):
    __slots__ = ("customer", "created", "skipped_fields")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    created: bool
    skipped_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ..., created: _Optional[bool] = ..., skipped_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckCustomerReadinessRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CheckCustomerReadinessResponse(_message.Message):
    __slots__ = ("ready", "problems", "customer")
    READY_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    problems: _containers.RepeatedCompositeFieldContainer[ReadinessProblem]
    customer: Customer
    def __init__(self, ready: _Optional[bool] = ..., problems: _Optional[_Iterable[_Union[ReadinessProblem, _Mapping]]] = ..., customer: _Optional[_Union[Customer, _Mapping]] = ...) -> None: ...

class ReadinessProblem(_message.Message):
    __slots__ = ("reason", "field", "owner_system", "description")
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OWNER_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    reason: str
    field: str
    owner_system: str
    description: str
    def __init__(self, reason: _Optional[str] = ..., field: _Optional[str] = ..., owner_system: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...
