from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChangeChannel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_CHANNEL_UNSPECIFIED: _ClassVar[ChangeChannel]
    CHANGE_CHANNEL_API: _ClassVar[ChangeChannel]
    CHANGE_CHANNEL_SYNC: _ClassVar[ChangeChannel]
CHANGE_CHANNEL_UNSPECIFIED: ChangeChannel
CHANGE_CHANNEL_API: ChangeChannel
CHANGE_CHANNEL_SYNC: ChangeChannel

class ExternalReference(_message.Message):
    __slots__ = ("system", "external_id")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    system: str
    external_id: str
    def __init__(self, system: _Optional[str] = ..., external_id: _Optional[str] = ...) -> None: ...

class ChangeOrigin(_message.Message):
    __slots__ = ("system", "channel")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    system: str
    channel: ChangeChannel
    def __init__(self, system: _Optional[str] = ..., channel: _Optional[_Union[ChangeChannel, str]] = ...) -> None: ...
