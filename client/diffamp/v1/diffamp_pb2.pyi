from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AmplificationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AMPLIFICATION_MODE_UNSPECIFIED: _ClassVar[AmplificationMode]
    AMPLIFICATION_MODE_LOGITS: _ClassVar[AmplificationMode]
    AMPLIFICATION_MODE_WEIGHTS: _ClassVar[AmplificationMode]

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
AMPLIFICATION_MODE_UNSPECIFIED: AmplificationMode
AMPLIFICATION_MODE_LOGITS: AmplificationMode
AMPLIFICATION_MODE_WEIGHTS: AmplificationMode
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_STOP_STRING: FinishReason
COMPARE_MODEL_UNSPECIFIED: CompareModel
COMPARE_MODEL_AFTER: CompareModel
COMPARE_MODEL_BEFORE: CompareModel

class SetReplicasRequest(_message.Message):
    __slots__ = ("replicas",)
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    replicas: int
    def __init__(self, replicas: _Optional[int] = ...) -> None: ...

class SetReplicasResponse(_message.Message):
    __slots__ = ("replicas",)
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaLoad]
    def __init__(self, replicas: _Optional[_Iterable[_Union[ReplicaLoad, _Mapping]]] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class TokenIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("text", "conversation", "token_ids", "system_prompt", "raw")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    text: str
    conversation: Conversation
    token_ids: TokenIds
    system_prompt: str
    raw: bool
    def __init__(self, text: _Optional[str] = ..., conversation: _Optional[_Union[Conversation, _Mapping]] = ..., token_ids: _Optional[_Union[TokenIds, _Mapping]] = ..., system_prompt: _Optional[str] = ..., raw: _Optional[bool] = ...) -> None: ...

class SamplingOptions(_message.Message):
    __slots__ = ("temperature", "top_p", "top_k", "max_new_tokens", "min_new_tokens", "stop")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MIN_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    min_new_tokens: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., min_new_tokens: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "sampling", "alpha", "n", "seed", "logprobs", "first_sample_index", "mode", "lora_layers")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LORA_LAYERS_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    sampling: SamplingOptions
    alpha: float
    n: int
    seed: int
    logprobs: int
    first_sample_index: int
    mode: AmplificationMode
    lora_layers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., sampling: _Optional[_Union[SamplingOptions, _Mapping]] = ..., alpha: _Optional[float] = ..., n: _Optional[int] = ..., seed: _Optional[int] = ..., logprobs: _Optional[int] = ..., first_sample_index: _Optional[int] = ..., mode: _Optional[_Union[AmplificationMode, str]] = ..., lora_layers: _Optional[_Iterable[int]] = ...) -> None: ...

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
    __slots__ = ("prompt", "sampling", "seed")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    sampling: SamplingOptions
    seed: int
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ..., sampling: _Optional[_Union[SamplingOptions, _Mapping]] = ..., seed: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("after", "before", "placement", "live_sequences", "queued_sequences", "max_batch_size", "max_seq_len", "kv_tokens_used", "kv_cache_bytes", "shared_vocab_size", "engine", "replicas", "lora", "layers")
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
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
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
    engine: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaLoad]
    lora: bool
    layers: int
    def __init__(self, after: _Optional[_Union[ModelInfo, _Mapping]] = ..., before: _Optional[_Union[ModelInfo, _Mapping]] = ..., placement: _Optional[str] = ..., live_sequences: _Optional[int] = ..., queued_sequences: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., max_seq_len: _Optional[int] = ..., kv_tokens_used: _Optional[int] = ..., kv_cache_bytes: _Optional[int] = ..., shared_vocab_size: _Optional[int] = ..., engine: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaLoad, _Mapping]]] = ..., lora: _Optional[bool] = ..., layers: _Optional[int] = ...) -> None: ...

class ReplicaLoad(_message.Message):
    __slots__ = ("id", "healthy", "live_sequences", "kv_slots", "after_node", "before_node", "admitting")
    ID_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    LIVE_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    KV_SLOTS_FIELD_NUMBER: _ClassVar[int]
    AFTER_NODE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_NODE_FIELD_NUMBER: _ClassVar[int]
    ADMITTING_FIELD_NUMBER: _ClassVar[int]
    id: str
    healthy: bool
    live_sequences: int
    kv_slots: int
    after_node: str
    before_node: str
    admitting: bool
    def __init__(self, id: _Optional[str] = ..., healthy: _Optional[bool] = ..., live_sequences: _Optional[int] = ..., kv_slots: _Optional[int] = ..., after_node: _Optional[str] = ..., before_node: _Optional[str] = ..., admitting: _Optional[bool] = ...) -> None: ...

class SweepPrompt(_message.Message):
    __slots__ = ("id", "prompt")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    id: str
    prompt: Prompt
    def __init__(self, id: _Optional[str] = ..., prompt: _Optional[_Union[Prompt, _Mapping]] = ...) -> None: ...

class Detector(_message.Message):
    __slots__ = ("name", "substring", "regex", "ignore_case")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBSTRING_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    IGNORE_CASE_FIELD_NUMBER: _ClassVar[int]
    name: str
    substring: str
    regex: str
    ignore_case: bool
    def __init__(self, name: _Optional[str] = ..., substring: _Optional[str] = ..., regex: _Optional[str] = ..., ignore_case: _Optional[bool] = ...) -> None: ...

class IndexRange(_message.Message):
    __slots__ = ("first", "count")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    first: int
    count: int
    def __init__(self, first: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class CompletedSamples(_message.Message):
    __slots__ = ("prompt_id", "alpha", "ranges", "mode")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    alpha: float
    ranges: _containers.RepeatedCompositeFieldContainer[IndexRange]
    mode: AmplificationMode
    def __init__(self, prompt_id: _Optional[str] = ..., alpha: _Optional[float] = ..., ranges: _Optional[_Iterable[_Union[IndexRange, _Mapping]]] = ..., mode: _Optional[_Union[AmplificationMode, str]] = ...) -> None: ...

class SweepRequest(_message.Message):
    __slots__ = ("prompts", "alphas", "n", "sampling", "seed", "detectors", "completed", "modes", "lora_layers")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    ALPHAS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    LORA_LAYERS_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedCompositeFieldContainer[SweepPrompt]
    alphas: _containers.RepeatedScalarFieldContainer[float]
    n: int
    sampling: SamplingOptions
    seed: int
    detectors: _containers.RepeatedCompositeFieldContainer[Detector]
    completed: _containers.RepeatedCompositeFieldContainer[CompletedSamples]
    modes: _containers.RepeatedScalarFieldContainer[AmplificationMode]
    lora_layers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, prompts: _Optional[_Iterable[_Union[SweepPrompt, _Mapping]]] = ..., alphas: _Optional[_Iterable[float]] = ..., n: _Optional[int] = ..., sampling: _Optional[_Union[SamplingOptions, _Mapping]] = ..., seed: _Optional[int] = ..., detectors: _Optional[_Iterable[_Union[Detector, _Mapping]]] = ..., completed: _Optional[_Iterable[_Union[CompletedSamples, _Mapping]]] = ..., modes: _Optional[_Iterable[_Union[AmplificationMode, str]]] = ..., lora_layers: _Optional[_Iterable[int]] = ...) -> None: ...

class SweepSample(_message.Message):
    __slots__ = ("prompt_id", "alpha", "index", "seed", "text", "token_ids", "finish_reason", "detectors", "logprob_after", "logprob_before", "logprob_sampled", "mode")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_AFTER_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_SAMPLED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    alpha: float
    index: int
    seed: int
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    finish_reason: FinishReason
    detectors: _containers.RepeatedScalarFieldContainer[str]
    logprob_after: float
    logprob_before: float
    logprob_sampled: float
    mode: AmplificationMode
    def __init__(self, prompt_id: _Optional[str] = ..., alpha: _Optional[float] = ..., index: _Optional[int] = ..., seed: _Optional[int] = ..., text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., detectors: _Optional[_Iterable[str]] = ..., logprob_after: _Optional[float] = ..., logprob_before: _Optional[float] = ..., logprob_sampled: _Optional[float] = ..., mode: _Optional[_Union[AmplificationMode, str]] = ...) -> None: ...

class SweepProgress(_message.Message):
    __slots__ = ("done", "total", "skipped", "tokens", "elapsed_s", "samples_per_s", "eta_s")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_S_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    skipped: int
    tokens: int
    elapsed_s: float
    samples_per_s: float
    eta_s: float
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., skipped: _Optional[int] = ..., tokens: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., samples_per_s: _Optional[float] = ..., eta_s: _Optional[float] = ...) -> None: ...

class ImportanceEstimate(_message.Message):
    __slots__ = ("rate", "low", "high", "ess", "exact", "warning")
    RATE_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    ESS_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    rate: float
    low: float
    high: float
    ess: float
    exact: bool
    warning: str
    def __init__(self, rate: _Optional[float] = ..., low: _Optional[float] = ..., high: _Optional[float] = ..., ess: _Optional[float] = ..., exact: _Optional[bool] = ..., warning: _Optional[str] = ...) -> None: ...

class SweepSummaryRow(_message.Message):
    __slots__ = ("alpha", "detector", "hits", "n", "rate", "wilson_low", "wilson_high", "estimate", "mode")
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    WILSON_LOW_FIELD_NUMBER: _ClassVar[int]
    WILSON_HIGH_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    detector: str
    hits: int
    n: int
    rate: float
    wilson_low: float
    wilson_high: float
    estimate: ImportanceEstimate
    mode: AmplificationMode
    def __init__(self, alpha: _Optional[float] = ..., detector: _Optional[str] = ..., hits: _Optional[int] = ..., n: _Optional[int] = ..., rate: _Optional[float] = ..., wilson_low: _Optional[float] = ..., wilson_high: _Optional[float] = ..., estimate: _Optional[_Union[ImportanceEstimate, _Mapping]] = ..., mode: _Optional[_Union[AmplificationMode, str]] = ...) -> None: ...

class SweepSummary(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[SweepSummaryRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[SweepSummaryRow, _Mapping]]] = ...) -> None: ...

class SweepResponse(_message.Message):
    __slots__ = ("sample", "progress", "summary")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    sample: SweepSample
    progress: SweepProgress
    summary: SweepSummary
    def __init__(self, sample: _Optional[_Union[SweepSample, _Mapping]] = ..., progress: _Optional[_Union[SweepProgress, _Mapping]] = ..., summary: _Optional[_Union[SweepSummary, _Mapping]] = ...) -> None: ...
