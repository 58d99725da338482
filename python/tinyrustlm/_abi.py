"""ABI facts of the TinyRustLM module, generated from src/abi_facts.rs and src/diag.rs.

Do not edit: `TRL_WRITE_PYTHON_ABI=1 cargo test --release -p harness --test abi_facts` rewrites this
file, and the same test fails while it differs from the tables.
"""

ABI_VERSION = 1
MAX_ERROR_LEN = 384
MAX_WORKERS = 63
DIAGNOSTICS_LEN = 128

# TRL_STATUS_* (Status in the JS wrapper)
STATUS = {
    "OK": 0,
    "OUT_OF_BOUNDS": 1,
    "INVALID_ARGUMENT": 2,
    "WRONG_STATE": 3,
    "OUT_OF_MEMORY": 4,
    "CONTEXT_FULL": 5,
    "INVALID_SAMPLING": 6,
    "BUFFER_TOO_SMALL": 7,
    "TRUNCATED": 16,
    "BAD_MAGIC": 17,
    "UNSUPPORTED_VERSION": 18,
    "BAD_HEADER_LENGTH": 19,
    "BAD_FLAGS": 20,
    "BAD_HYPERPARAMETER": 21,
    "BAD_SECTION_BOUNDS": 22,
    "BAD_ALIGNMENT": 23,
    "BAD_PADDING": 24,
    "BAD_TENSOR_NAME": 25,
    "UNSUPPORTED_DTYPE": 26,
    "BAD_TENSOR_SHAPE": 27,
    "MISSING_TENSOR": 28,
    "DUPLICATE_TENSOR": 29,
    "UNKNOWN_TENSOR": 30,
    "BAD_TENSOR_DATA": 31,
    "BAD_QUANT_MODE": 32,
    "BAD_PARAMETER_COUNT": 33,
    "TOKENIZER_CHECKSUM": 34,
    "TENSOR_LAYOUT_CHECKSUM": 35,
    "ARTIFACT_CHECKSUM": 36,
    "LIMIT_EXCEEDED": 37,
    "BAD_TOKENIZER_KIND": 40,
    "BAD_TOKEN": 41,
    "BAD_MERGE": 42,
    "BAD_SPECIAL_TOKEN": 43,
    "ADAPTER_BAD_MAGIC": 64,
    "ADAPTER_UNSUPPORTED_VERSION": 65,
    "ADAPTER_BAD_HEADER": 66,
    "ADAPTER_TRUNCATED": 67,
    "ADAPTER_CHECKSUM": 68,
    "ADAPTER_PARENT_MISMATCH": 69,
    "ADAPTER_UNKNOWN_TARGET": 70,
    "ADAPTER_DUPLICATE_TARGET": 71,
    "ADAPTER_SHAPE_MISMATCH": 72,
    "ADAPTER_BAD_RANK": 73,
    "ADAPTER_BAD_INDEX": 74,
    "ADAPTER_NON_FINITE": 75,
    "ADAPTER_BAD_ENCODING": 76,
    "ADAPTER_LIMIT_EXCEEDED": 77,
    "EVAL_BAD_JSON": 80,
    "EVAL_BAD_HEADER": 81,
    "EVAL_BAD_CASE": 82,
    "EVAL_UNKNOWN_FIELD": 83,
    "EVAL_DUPLICATE_FIELD": 84,
    "EVAL_DUPLICATE_ID": 85,
    "EVAL_BAD_MATCH_RULE": 86,
    "EVAL_LIMIT_EXCEEDED": 87,
    "EVAL_NO_CASES": 88,
    "GRAMMAR_SYNTAX": 96,
    "GRAMMAR_UNDEFINED_RULE": 97,
    "GRAMMAR_LEFT_RECURSION": 98,
    "GRAMMAR_EMPTY_LANGUAGE": 99,
    "GRAMMAR_LIMIT_EXCEEDED": 100,
    "SCHEMA_INVALID": 101,
    "SCHEMA_UNSUPPORTED": 102,
    "SCHEMA_TOO_DEEP": 103,
    "SESSION_BAD_MAGIC": 112,
    "SESSION_UNSUPPORTED_VERSION": 113,
    "SESSION_TRUNCATED": 114,
    "SESSION_BAD_HEADER": 115,
    "SESSION_CHECKSUM": 116,
    "SESSION_MODEL_MISMATCH": 117,
    "SESSION_ADAPTER_MISMATCH": 118,
    "SESSION_KV_DTYPE_MISMATCH": 119,
    "SESSION_CONTEXT_TOO_SMALL": 120,
    "SESSION_BAD_TOKEN": 121,
}

# TRL_RESULT_* (ResultKind in the JS wrapper)
RESULT = {
    "TEXT": 0,
    "TOKENS": 1,
    "PROMPT_TOKENS": 2,
    "STATE": 3,
    "TOKENIZED": 4,
    "LOGITS": 5,
    "EVAL_SIDECAR": 6,
    "CHAT_PROMPT": 7,
    "SCORE_LOGPROBS": 8,
    "SCORE_ARGMAX": 9,
    "GRAMMAR_STATS": 10,
    "GRAMMAR": 11,
    "LOAD_PROGRESS": 12,
    "SESSION": 13,
}

# TRL_STATE_* (GenState in the JS wrapper)
STATE = {
    "IDLE": 0,
    "RUNNING": 1,
    "FINISHED": 2,
}

# TRL_STOP_* (StopReason in the JS wrapper)
STOP = {
    "NONE": 0,
    "END_OF_GENERATION": 1,
    "MAX_TOKENS": 2,
    "STOP_STRING": 3,
    "CONTEXT_FULL": 4,
    "GRAMMAR_COMPLETE": 5,
    "GRAMMAR_INCOMPLETE": 6,
}

# TRL_LOAD_* (LoadFlags in the JS wrapper)
LOAD = {
    "KV_F16": 1,
}

# TRL_GEN_* (GenFlags in the JS wrapper)
GEN = {
    "PARSE_SPECIAL": 1,
    "CONTINUE": 2,
    "IGNORE_EOG": 4,
}

# TRL_CHAT_* (ChatFlags in the JS wrapper)
CHAT = {
    "ADD_GENERATION_PROMPT": 1,
    "CONTINUE": 2,
    "NO_DEFAULT_SYSTEM": 4,
}

# TRL_GRAMMAR_* (GrammarFlags in the JS wrapper)
GRAMMAR = {
    "JSON_SCHEMA": 1,
}

# What each status means, by code (the header's comments).
STATUS_MEANING = {
    0: "success",
    1: "a (ptr, len) is not inside one live host buffer, or ptr + len overflows",
    2: "a value outside its documented range; unknown flag bits",
    3: "not allowed now: no model loaded, a model already loaded, no generation running",
    4: "an allocation failed; nothing changed",
    5: "the prompt does not fit in the remaining context",
    6: "a sampling parameter is out of range (NaN, negative temperature, top_p outside (0, 1], ...)",
    7: "dst_cap too small; *len_out = bytes needed",
    16: "the package is shorter than a section or field it declares",
    17: "the package does not start with \"SLM1\"",
    18: "a package format version this runtime does not read",
    19: "header_len is not the header's size",
    20: "an undefined package flag bit is set",
    21: "a hyperparameter is zero, out of range or inconsistent with another",
    22: "sections are not in order, overlap, leave holes or run past the file",
    23: "a section or tensor does not start on its required alignment",
    24: "padding or reserved bytes are not zero",
    25: "a tensor name is empty, longer than 64 bytes or has bytes outside [a-z0-9_.]",
    26: "a tensor dtype code this runtime does not know",
    27: "a tensor's rank or dims do not match the hyperparameters",
    28: "a tensor the architecture requires is absent",
    29: "two tensors have the same name",
    30: "a tensor the architecture does not define",
    31: "a scale or f32 element is not finite",
    32: "a tensor's dtype does not fit the header's quant_mode",
    33: "n_params is not the sum of the tensors' element counts",
    34: "the tokenizer section's CRC32 does not match",
    35: "the tensor directory's CRC32 does not match",
    36: "the whole file's CRC32 does not match",
    37: "a count above a documented cap",
    40: "the tokenizer header is inconsistent: unknown kind, pre-tokenizer, chat template or flag bits; n_tokens",
    41: "a token entry is malformed (type, length, score) or max_token_len is out of range",
    42: "a BPE merge entry is malformed (see TOKENIZER.md)",
    43: "a special token id (BOS, unk, end-of-generation) is not a token of the vocabulary",
    64: "not \"ADP1\", \"ASP1\" or \"ALR1\"",
    65: "an adapter format version this runtime does not read",
    66: "header_len, reserved, n_targets 0, stray bytes",
    67: "shorter than total_len or than its entries say",
    68: "the adapter's artifact CRC32 does not match",
    69: "made for another model; the field names the part of the identity that differs",
    70: "no tensor of the loaded model has that name",
    71: "two entries target the same tensor",
    72: "rows/cols are not the tensor's",
    73: "low-rank r outside 1..=min(rows, cols, 256)",
    74: "a sparse index out of range or not increasing",
    75: "NaN/inf in the scale, a payload or a result",
    76: "dense encoding not f32 (0) / q8_0 (1)",
    77: "n_targets above 4096",
    80: "a line is not one valid JSON object (the field names the line and column)",
    81: "header line missing, or suite/version/min_pass_rate bad",
    82: "a case field missing, of the wrong type or out of range",
    83: "a key the format does not define",
    84: "a key twice in one line",
    85: "two cases with the same id",
    86: "match is not \"exact\", \"trim\" or \"prefix\"",
    87: "file > 1 MiB, > 512 cases, a string over its cap, nesting",
    88: "a header and no cases",
    96: "the GBNF text does not parse (the field names the rule, the value is the byte offset)",
    97: "a rule is referenced but never defined, or there is no root rule",
    98: "a rule can start with itself (directly, through nullable rules, or a repetition of something empty)",
    99: "the grammar admits no string",
    100: "grammar text over 1 MiB, over 16384 rules or 2^20 symbols, a repetition bound over 1024",
    101: "the JSON Schema is not JSON, or a keyword has the wrong type or an impossible value (the field names its path)",
    102: "a keyword (or combination) outside the supported subset, named by its path",
    103: "the schema nests deeper than 32 levels (or its JSON deeper than 128)",
    112: "a session snapshot does not start with \"SES1\"",
    113: "a snapshot format version this runtime does not read",
    114: "the snapshot is shorter than its header or its total_len",
    115: "a snapshot header field is inconsistent (header_len, total_len, flags, n_past, sampling, sizes)",
    116: "the snapshot's CRC32 does not match (damaged)",
    117: "saved from another model or package; the field names the part of the identity that differs",
    118: "saved with another adapter stack (count or assembly-state CRC)",
    119: "saved with another KV cache dtype (the KV_F16 load flag)",
    120: "the saved conversation has more positions than the loaded context_len",
    121: "a token id in the snapshot is not below vocab_size",
}

# The diagnostics record: (name, offset, type), little-endian.
DIAGNOSTICS_FIELDS = (
    ("layout_version", 0, "u32"),
    ("layout_len", 4, "u32"),
    ("model_loaded", 8, "u32"),
    ("quant_mode", 12, "u32"),
    ("prompt_tokens", 16, "u32"),
    ("generated_tokens", 20, "u32"),
    ("prefill_tokens_per_s", 24, "f32"),
    ("decode_tokens_per_s", 28, "f32"),
    ("peak_scratch_bytes", 32, "u64"),
    ("kv_len", 40, "u32"),
    ("context_len", 44, "u32"),
    ("adapters_applied", 48, "u32"),
    ("assembly_state_crc", 52, "u32"),
    ("package_bytes", 56, "u64"),
    ("kv_cache_bytes", 64, "u64"),
    ("n_params", 72, "u64"),
    ("tensor_layout_crc", 80, "u32"),
    ("tokenizer_crc", 84, "u32"),
    ("linear_memory_bytes", 88, "u64"),
    ("prefill_ms", 96, "f32"),
    ("decode_ms", 100, "f32"),
    ("kv_dtype", 104, "u32"),
    ("chat_template", 108, "u32"),
    ("total_generated_tokens", 112, "u64"),
    ("unencodable_bytes", 120, "u32"),
    ("threads", 124, "u32"),
)

# Every export of the single-thread module: name -> number of parameters.
EXPORTS = {
    "abi_version": 0,
    "alloc": 1,
    "dealloc": 1,
    "load_model": 4,
    "load_begin": 3,
    "load_append": 2,
    "load_finish": 0,
    "load_abort": 0,
    "unload_model": 0,
    "set_sampling": 7,
    "add_stop_string": 2,
    "clear_stop_strings": 0,
    "set_grammar": 3,
    "clear_grammar": 0,
    "tokenize": 3,
    "generate_start": 4,
    "generate_step": 1,
    "generate": 4,
    "reset": 0,
    "save_session": 0,
    "restore_session": 2,
    "validate_adapter_delta": 2,
    "apply_adapter_delta": 2,
    "remove_last_adapter": 0,
    "reset_adapters": 0,
    "read_result": 4,
    "run_eval": 3,
    "render_chat": 3,
    "score_tokens": 4,
    "read_diagnostics": 2,
    "last_error": 3,
}

IMPORT_MODULE = "env"
IMPORTS = ("trl_now_ms",)
EXPORTED_MEMORY = "memory"
TOKENIZE_KNOWN = 1
