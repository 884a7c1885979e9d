from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchCapabilities(_message.Message):
    __slots__ = ("without_service_name", "same_span_conjunction")
    WITHOUT_SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    SAME_SPAN_CONJUNCTION_FIELD_NUMBER: _ClassVar[int]
    without_service_name: bool
    same_span_conjunction: bool
    def __init__(self, without_service_name: bool = ..., same_span_conjunction: bool = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("search",)
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    search: SearchCapabilities
    def __init__(self, search: _Optional[_Union[SearchCapabilities, _Mapping]] = ...) -> None: ...
