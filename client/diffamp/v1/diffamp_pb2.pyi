from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_STOP_STRING: _ClassVar[FinishReason]

class CompareModel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPARE_MODEL_UNSPECIFIED: _ClassVar[CompareModel]
    COMPARE_MODEL_AFTER: _ClassVar[CompareModel]
    COMPARE_MODEL_BEFORE: _ClassVar[CompareModel]
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_STOP_STRING: FinishReason
COMPARE_MODEL_UNSPECIFIED: CompareModel
COMPARE_MODEL_AFTER: CompareModel
COMPARE_MODEL_BEFORE: CompareModel

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "system_prompt", "messages", "prompt_token_ids", "raw_prompt", "alpha", "n", "max_new_tokens", "temperature", "top_p", "top_k", "seed", "stop", "logprobs", "first_sample_index")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    RAW_PROMPT_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    system_prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    raw_prompt: bool
    alpha: float
    n: int
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    logprobs: int
    first_sample_index: int
    def __init__(self, prompt: _Optional[str] = ..., system_prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., raw_prompt: _Optional[bool] = ..., alpha: _Optional[float] = ..., n: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., logprobs: _Optional[int] = ..., first_sample_index: _Optional[int] = ...) -> None: ...

class TopLogprob(_message.Message):
    __slots__ = ("token_id", "token", "logprob")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    token_id: int
    token: str
    logprob: float
    def __init__(self, token_id: _Optional[int] = ..., token: _Optional[str] = ..., logprob: _Optional[float] = ...) -> None: ...

class TokenLogprobs(_message.Message):
    __slots__ = ("token_id", "amplified", "after", "before", "sampled", "top", "kl_after_before", "token")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    AMPLIFIED_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    KL_AFTER_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token_id: int
    amplified: float
    after: float
    before: float
    sampled: float
    top: _containers.RepeatedCompositeFieldContainer[TopLogprob]
    kl_after_before: float
    token: str
    def __init__(self, token_id: _Optional[int] = ..., amplified: _Optional[float] = ..., after: _Optional[float] = ..., before: _Optional[float] = ..., sampled: _Optional[float] = ..., top: _Optional[_Iterable[_Union[TopLogprob, _Mapping]]] = ..., kl_after_before: _Optional[float] = ..., token: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("index", "text", "token_ids", "logprobs", "finish_reason", "prompt_tokens", "completion_tokens", "seed")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    index: int
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprobs]
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    seed: int
    def __init__(self, index: _Optional[int] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., logprobs: _Optional[_Iterable[_Union[TokenLogprobs, _Mapping]]] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("prompt", "system_prompt", "messages", "prompt_token_ids", "raw_prompt", "max_new_tokens", "temperature", "top_p", "top_k", "seed", "stop")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    RAW_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    system_prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    raw_prompt: bool
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prompt: _Optional[str] = ..., system_prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., raw_prompt: _Optional[bool] = ..., max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("model", "text", "token_ids", "finish_reason", "completion_tokens", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: CompareModel
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    finish_reason: FinishReason
    completion_tokens: int
    seed: int
    def __init__(self, model: _Optional[_Union[CompareModel, str]] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., completion_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class CheckTokenizersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TokenMismatch(_message.Message):
    __slots__ = ("token_id", "after_token", "before_token")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    token_id: int
    after_token: str
    before_token: str
    def __init__(self, token_id: _Optional[int] = ..., after_token: _Optional[str] = ..., before_token: _Optional[str] = ...) -> None: ...

class CheckTokenizersResponse(_message.Message):
    __slots__ = ("compatible", "after_vocab_size", "before_vocab_size", "shared_vocab_size", "mismatches")
    COMPATIBLE_FIELD_NUMBER: _ClassVar[int]
    AFTER_VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHARED_VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    compatible: bool
    after_vocab_size: int
    before_vocab_size: int
    shared_vocab_size: int
    mismatches: _containers.RepeatedCompositeFieldContainer[TokenMismatch]
    def __init__(self, compatible: _Optional[bool] = ..., after_vocab_size: _Optional[int] = ..., before_vocab_size: _Optional[int] = ..., shared_vocab_size: _Optional[int] = ..., mismatches: _Optional[_Iterable[_Union[TokenMismatch, _Mapping]]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "architectures", "dtype", "device", "context_length", "logits_size", "node")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURES_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LOGITS_SIZE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    architectures: _containers.RepeatedScalarFieldContainer[str]
    dtype: str
    device: str
    context_length: int
    logits_size: int
    node: str
    def __init__(self, model_id: _Optional[str] = ..., architectures: _Optional[_Iterable[str]] = ..., dtype: _Optional[str] = ..., device: _Optional[str] = ..., context_length: _Optional[int] = ..., logits_size: _Optional[int] = ..., node: _Optional[str] = ...) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("after", "before", "placement", "live_sequences", "queued_sequences", "max_batch_size", "max_seq_len", "kv_tokens_used", "kv_cache_bytes", "shared_vocab_size")
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    LIVE_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    QUEUED_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LEN_FIELD_NUMBER: _ClassVar[int]
    KV_TOKENS_USED_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHARED_VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    after: ModelInfo
    before: ModelInfo
    placement: str
    live_sequences: int
    queued_sequences: int
    max_batch_size: int
    max_seq_len: int
    kv_tokens_used: int
    kv_cache_bytes: int
    shared_vocab_size: int
    def __init__(self, after: _Optional[_Union[ModelInfo, _Mapping]] = ..., before: _Optional[_Union[ModelInfo, _Mapping]] = ..., placement: _Optional[str] = ..., live_sequences: _Optional[int] = ..., queued_sequences: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., max_seq_len: _Optional[int] = ..., kv_tokens_used: _Optional[int] = ..., kv_cache_bytes: _Optional[int] = ..., shared_vocab_size: _Optional[int] = ...) -> None: ...
