import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import money_pb2 as _money_pb2
from syncmesh.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProductType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRODUCT_TYPE_UNSPECIFIED: _ClassVar[ProductType]
    PRODUCT_TYPE_LICENSE: _ClassVar[ProductType]
    PRODUCT_TYPE_SUBSCRIPTION: _ClassVar[ProductType]
    PRODUCT_TYPE_USAGE: _ClassVar[ProductType]
    PRODUCT_TYPE_SERVICE: _ClassVar[ProductType]
    PRODUCT_TYPE_IMPLEMENTATION: _ClassVar[ProductType]

class PricingModel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRICING_MODEL_UNSPECIFIED: _ClassVar[PricingModel]
    PRICING_MODEL_ONE_TIME: _ClassVar[PricingModel]
    PRICING_MODEL_RECURRING: _ClassVar[PricingModel]
    PRICING_MODEL_USAGE: _ClassVar[PricingModel]

class BillingInterval(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BILLING_INTERVAL_UNSPECIFIED: _ClassVar[BillingInterval]
    BILLING_INTERVAL_MONTH: _ClassVar[BillingInterval]
    BILLING_INTERVAL_QUARTER: _ClassVar[BillingInterval]
    BILLING_INTERVAL_YEAR: _ClassVar[BillingInterval]

class MappedObjectType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAPPED_OBJECT_TYPE_UNSPECIFIED: _ClassVar[MappedObjectType]
    MAPPED_OBJECT_TYPE_PRODUCT: _ClassVar[MappedObjectType]
    MAPPED_OBJECT_TYPE_PRICE: _ClassVar[MappedObjectType]
PRODUCT_TYPE_UNSPECIFIED: ProductType
PRODUCT_TYPE_LICENSE: ProductType
PRODUCT_TYPE_SUBSCRIPTION: ProductType
PRODUCT_TYPE_USAGE: ProductType
PRODUCT_TYPE_SERVICE: ProductType
PRODUCT_TYPE_IMPLEMENTATION: ProductType
PRICING_MODEL_UNSPECIFIED: PricingModel
PRICING_MODEL_ONE_TIME: PricingModel
PRICING_MODEL_RECURRING: PricingModel
PRICING_MODEL_USAGE: PricingModel
BILLING_INTERVAL_UNSPECIFIED: BillingInterval
BILLING_INTERVAL_MONTH: BillingInterval
BILLING_INTERVAL_QUARTER: BillingInterval
BILLING_INTERVAL_YEAR: BillingInterval
MAPPED_OBJECT_TYPE_UNSPECIFIED: MappedObjectType
MAPPED_OBJECT_TYPE_PRODUCT: MappedObjectType
MAPPED_OBJECT_TYPE_PRICE: MappedObjectType

class Product(_message.Message):
    __slots__ = ("name", "sku", "display_name", "description", "product_type", "active", "legal_entity", "external_references", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    sku: str
    display_name: str
    description: str
    product_type: ProductType
    active: bool
    legal_entity: str
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., sku: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., product_type: _Optional[_Union[ProductType, str]] = ..., active: _Optional[bool] = ..., legal_entity: _Optional[str] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class Price(_message.Message):
    __slots__ = ("name", "display_name", "pricing_model", "unit_amount", "billing_period", "usage_unit", "active", "external_references", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PRICING_MODEL_FIELD_NUMBER: _ClassVar[int]
    UNIT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    USAGE_UNIT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    pricing_model: PricingModel
    unit_amount: _money_pb2.Money
    billing_period: BillingPeriod
    usage_unit: str
    active: bool
    external_references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExternalReference]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., pricing_model: _Optional[_Union[PricingModel, str]] = ..., unit_amount: _Optional[_Union[_money_pb2.Money, _Mapping]] = ..., billing_period: _Optional[_Union[BillingPeriod, _Mapping]] = ..., usage_unit: _Optional[str] = ..., active: _Optional[bool] = ..., external_references: _Optional[_Iterable[_Union[_common_pb2.ExternalReference, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class BillingPeriod(_message.Message):
    __slots__ = ("interval", "interval_count")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    interval: BillingInterval
    interval_count: int
    def __init__(self, interval: _Optional[_Union[BillingInterval, str]] = ..., interval_count: _Optional[int] = ...) -> None: ...

class ProductMapping(_message.Message):
    __slots__ = ("name", "external_reference", "mapping_version", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    MAPPING_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    external_reference: _common_pb2.ExternalReference
    mapping_version: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., external_reference: _Optional[_Union[_common_pb2.ExternalReference, _Mapping]] = ..., mapping_version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class PriceMapping(_message.Message):
    __slots__ = ("name", "external_reference", "mapping_version", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    MAPPING_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    external_reference: _common_pb2.ExternalReference
    mapping_version: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., external_reference: _Optional[_Union[_common_pb2.ExternalReference, _Mapping]] = ..., mapping_version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class CreateProductRequest(_message.Message):
    __slots__ = ("product", "request_id")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    product: Product
    request_id: str
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetProductRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateProductRequest(_message.Message):
    __slots__ = ("product", "update_mask", "request_id")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    product: Product
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListProductsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListProductsResponse(_message.Message):
    __slots__ = ("products", "next_page_token")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    next_page_token: str
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreatePriceRequest(_message.Message):
    __slots__ = ("parent", "price", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    price: Price
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., price: _Optional[_Union[Price, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetPriceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdatePriceRequest(_message.Message):
    __slots__ = ("price", "update_mask", "request_id")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    price: Price
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, price: _Optional[_Union[Price, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListPricesRequest(_message.Message):
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

class ListPricesResponse(_message.Message):
    __slots__ = ("prices", "next_page_token")
    PRICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prices: _containers.RepeatedCompositeFieldContainer[Price]
    next_page_token: str
    def __init__(self, prices: _Optional[_Iterable[_Union[Price, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateProductMappingRequest(_message.Message):
    __slots__ = ("parent", "product_mapping", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_MAPPING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    product_mapping: ProductMapping
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., product_mapping: _Optional[_Union[ProductMapping, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetProductMappingRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateProductMappingRequest(_message.Message):
    __slots__ = ("product_mapping", "update_mask", "request_id")
    PRODUCT_MAPPING_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    product_mapping: ProductMapping
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, product_mapping: _Optional[_Union[ProductMapping, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListProductMappingsRequest(_message.Message):
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

class ListProductMappingsResponse(_message.Message):
    __slots__ = ("product_mappings", "next_page_token")
    PRODUCT_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    product_mappings: _containers.RepeatedCompositeFieldContainer[ProductMapping]
    next_page_token: str
    def __init__(self, product_mappings: _Optional[_Iterable[_Union[ProductMapping, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreatePriceMappingRequest(_message.Message):
    __slots__ = ("parent", "price_mapping", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PRICE_MAPPING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    price_mapping: PriceMapping
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., price_mapping: _Optional[_Union[PriceMapping, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetPriceMappingRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdatePriceMappingRequest(_message.Message):
    __slots__ = ("price_mapping", "update_mask", "request_id")
    PRICE_MAPPING_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    price_mapping: PriceMapping
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, price_mapping: _Optional[_Union[PriceMapping, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListPriceMappingsRequest(_message.Message):
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

class ListPriceMappingsResponse(_message.Message):
    __slots__ = ("price_mappings", "next_page_token")
    PRICE_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    price_mappings: _containers.RepeatedCompositeFieldContainer[PriceMapping]
    next_page_token: str
    def __init__(self, price_mappings: _Optional[_Iterable[_Union[PriceMapping, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResolveMappingRequest(_message.Message):
    __slots__ = ("canonical_name", "external_reference", "target_system", "object_type")
    CANONICAL_NAME_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    canonical_name: str
    external_reference: _common_pb2.ExternalReference
    target_system: str
    object_type: MappedObjectType
    def __init__(self, canonical_name: _Optional[str] = ..., external_reference: _Optional[_Union[_common_pb2.ExternalReference, _Mapping]] = ..., target_system: _Optional[str] = ..., object_type: _Optional[_Union[MappedObjectType, str]] = ...) -> None: ...

class ResolveMappingResponse(_message.Message):
    __slots__ = ("canonical_name", "object_type", "external_reference", "mapping", "mapping_version")
    CANONICAL_NAME_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    MAPPING_FIELD_NUMBER: _ClassVar[int]
    MAPPING_VERSION_FIELD_NUMBER: _ClassVar[int]
    canonical_name: str
    object_type: MappedObjectType
    external_reference: _common_pb2.ExternalReference
    mapping: str
    mapping_version: int
    def __init__(self, canonical_name: _Optional[str] = ..., object_type: _Optional[_Union[MappedObjectType, str]] = ..., external_reference: _Optional[_Union[_common_pb2.ExternalReference, _Mapping]] = ..., mapping: _Optional[str] = ..., mapping_version: _Optional[int] = ...) -> None: ...
