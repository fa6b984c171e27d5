from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PublicKey(_message.Message):
    __slots__ = ("key_id", "collection", "role", "keytype", "scheme", "public", "state", "max_signed_version")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    KEYTYPE_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIGNED_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    collection: str
    role: str
    keytype: str
    scheme: str
    public: str
    state: str
    max_signed_version: int
    def __init__(self, key_id: _Optional[str] = ..., collection: _Optional[str] = ..., role: _Optional[str] = ..., keytype: _Optional[str] = ..., scheme: _Optional[str] = ..., public: _Optional[str] = ..., state: _Optional[str] = ..., max_signed_version: _Optional[int] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("collection", "role", "algorithm")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    collection: str
    role: str
    algorithm: str
    def __init__(self, collection: _Optional[str] = ..., role: _Optional[str] = ..., algorithm: _Optional[str] = ...) -> None: ...

class GetPublicKeyRequest(_message.Message):
    __slots__ = ("collection", "role")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    role: str
    def __init__(self, collection: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[PublicKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[PublicKey, _Mapping]]] = ...) -> None: ...

class SignRequest(_message.Message):
    __slots__ = ("key_id", "payload", "collection", "role")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    payload: bytes
    collection: str
    role: str
    def __init__(self, key_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., collection: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("key_id", "signature")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    signature: str
    def __init__(self, key_id: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...

class DeleteKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class DeleteKeyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("collection", "role", "algorithm")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    collection: str
    role: str
    algorithm: str
    def __init__(self, collection: _Optional[str] = ..., role: _Optional[str] = ..., algorithm: _Optional[str] = ...) -> None: ...

class RetireKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class RetireKeyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SignBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SignRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SignRequest, _Mapping]]] = ...) -> None: ...

class SignError(_message.Message):
    __slots__ = ("code", "grpc_status", "message", "highest_signed_version")
    CODE_FIELD_NUMBER: _ClassVar[int]
    GRPC_STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HIGHEST_SIGNED_VERSION_FIELD_NUMBER: _ClassVar[int]
    code: str
    grpc_status: int
    message: str
    highest_signed_version: int
    def __init__(self, code: _Optional[str] = ..., grpc_status: _Optional[int] = ..., message: _Optional[str] = ..., highest_signed_version: _Optional[int] = ...) -> None: ...

class SignBatchResult(_message.Message):
    __slots__ = ("index", "signature", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    signature: SignResponse
    error: SignError
    def __init__(self, index: _Optional[int] = ..., signature: _Optional[_Union[SignResponse, _Mapping]] = ..., error: _Optional[_Union[SignError, _Mapping]] = ...) -> None: ...

class SignBatchResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SignBatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SignBatchResult, _Mapping]]] = ...) -> None: ...
