//! Every fact of the ABI a host can see, as tables: status codes, `read_result` kinds, generation
//! states and stop reasons, flags, the import and export lists with their wasm-level signatures,
//! and (from [`crate::diag`]) the diagnostics layout.
//!
//! `abi/tinyrustlm.h`, `abi/tinyrustlm.mjs` and `abi/tinyrustlm.d.ts` state the same facts for
//! their readers; `harness/tests/abi_facts.rs` compares all of them, and the built module's import
//! and export sections, with these tables and fails on any difference in either direction. To add
//! an export: one row in [`EXPORTS`] and its function in `abi.rs`; the test then names the header
//! prototype (and wrapper lines) still missing. Compiled on every target, so the harness reads the
//! same tables the module is built from.

pub use crate::diag::{
    DiagnosticsField, FieldType, FieldValue, FIELDS as DIAGNOSTICS_FIELDS, LAYOUT_LEN as DIAGNOSTICS_LEN, LAYOUT_VERSION as DIAGNOSTICS_LAYOUT_VERSION,
};

/// `TRL_ABI_VERSION`: bumped whenever an export's signature or meaning changes.
pub const ABI_VERSION: u32 = 1;

/// `TRL_MAX_ERROR_LEN`: status name + a field name at its cap + a value + the longest rule fit, so
/// in practice nothing is cut.
pub const MAX_ERROR_LEN: u32 = 384;

/// Numeric constants of the header that belong to no group below (`#define NAME value`).
pub const HEADER_SCALARS: &[(&str, u32)] =
    &[("TRL_ABI_VERSION", ABI_VERSION), ("TRL_MAX_ERROR_LEN", MAX_ERROR_LEN), ("TRL_MAX_WORKERS", crate::pool::MAX_WORKERS)];

/// Generates a `#[repr(u32)]` enum in which every variant is also a row of its table: `ALL` (the
/// variants in code order), `TABLE` (header name suffix and code), `name`, `meaning`, and a module
/// of `u32` constants named as in the header. A variant cannot exist without its name and meaning.
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident in $consts:ident {
            $($variant:ident = $code:literal => $name:ident: $meaning:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $ty {
            $(#[doc = $meaning] $variant = $code,)*
        }

        impl $ty {
            /// Every variant, in the order the header lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];
            /// `(name, code)` per variant; the name is the header constant's suffix.
            pub const TABLE: &'static [(&'static str, u32)] = &[$((stringify!($name), $code)),*];

            pub const fn code(self) -> u32 {
                self as u32
            }

            /// Upper-case name, the suffix of the header's constant (`TRL_STATUS_OUT_OF_BOUNDS`).
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => stringify!($name),)*
                }
            }

            /// What the value means, in one line.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $($ty::$variant => $meaning,)*
                }
            }

            pub const fn from_code(code: u32) -> Option<$ty> {
                match code {
                    $($code => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }

        #[doc = concat!("The codes of [`", stringify!($ty), "`] as `u32` constants, named as in the header.")]
        pub mod $consts {
            $(#[doc = $meaning] pub const $name: u32 = $code;)*
        }

        const _: () = assert!(all_distinct($ty::TABLE), concat!(stringify!($ty), ": two variants share a code"));
    };
}

/// No two rows share a code (the enum's own `repr` would also reject that; names are checked too).
const fn all_distinct(table: &[(&str, u32)]) -> bool {
    let mut i = 0;
    while i < table.len() {
        let mut j = i + 1;
        while j < table.len() {
            if table[i].1 == table[j].1 || str_eq(table[i].0, table[j].0) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

abi_enum! {
    /// Stable numeric status codes (the return value of every export), `TRL_STATUS_*`. Call-level
    /// errors are 1..=15, SLM1 package errors 16..=63, adapter errors 64..=79 (FORMAT.md
    /// "Adapters"), eval case-file errors 80..=95 (FORMAT.md "Eval cases and sidecars"), grammar and JSON Schema
    /// errors 96..=111 (README "Structured output"), session snapshot errors 112..=127 (FORMAT.md
    /// "Session snapshots").
    pub enum Status in status {
        Ok = 0 => OK: "success",
        OutOfBounds = 1 => OUT_OF_BOUNDS: "a (ptr, len) is not inside one live host buffer, or ptr + len overflows",
        InvalidArgument = 2 => INVALID_ARGUMENT: "a value outside its documented range; unknown flag bits",
        WrongState = 3 => WRONG_STATE: "not allowed now: no model loaded, a model already loaded, no generation running",
        OutOfMemory = 4 => OUT_OF_MEMORY: "an allocation failed; nothing changed",
        ContextFull = 5 => CONTEXT_FULL: "the prompt does not fit in the remaining context",
        InvalidSampling = 6 => INVALID_SAMPLING: "a sampling parameter is out of range (NaN, negative temperature, top_p outside (0, 1], ...)",
        BufferTooSmall = 7 => BUFFER_TOO_SMALL: "dst_cap too small; *len_out = bytes needed",
        Truncated = 16 => TRUNCATED: "the package is shorter than a section or field it declares",
        BadMagic = 17 => BAD_MAGIC: "the package does not start with \"SLM1\"",
        UnsupportedVersion = 18 => UNSUPPORTED_VERSION: "a package format version this runtime does not read",
        BadHeaderLength = 19 => BAD_HEADER_LENGTH: "header_len is not the header's size",
        BadFlags = 20 => BAD_FLAGS: "an undefined package flag bit is set",
        BadHyperparameter = 21 => BAD_HYPERPARAMETER: "a hyperparameter is zero, out of range or inconsistent with another",
        BadSectionBounds = 22 => BAD_SECTION_BOUNDS: "sections are not in order, overlap, leave holes or run past the file",
        BadAlignment = 23 => BAD_ALIGNMENT: "a section or tensor does not start on its required alignment",
        BadPadding = 24 => BAD_PADDING: "padding or reserved bytes are not zero",
        BadTensorName = 25 => BAD_TENSOR_NAME: "a tensor name is empty, longer than 64 bytes or has bytes outside [a-z0-9_.]",
        UnsupportedDtype = 26 => UNSUPPORTED_DTYPE: "a tensor dtype code this runtime does not know",
        BadTensorShape = 27 => BAD_TENSOR_SHAPE: "a tensor's rank or dims do not match the hyperparameters",
        MissingTensor = 28 => MISSING_TENSOR: "a tensor the architecture requires is absent",
        DuplicateTensor = 29 => DUPLICATE_TENSOR: "two tensors have the same name",
        UnknownTensor = 30 => UNKNOWN_TENSOR: "a tensor the architecture does not define",
        BadTensorData = 31 => BAD_TENSOR_DATA: "a scale or f32 element is not finite",
        BadQuantMode = 32 => BAD_QUANT_MODE: "a tensor's dtype does not fit the header's quant_mode",
        BadParameterCount = 33 => BAD_PARAMETER_COUNT: "n_params is not the sum of the tensors' element counts",
        TokenizerChecksum = 34 => TOKENIZER_CHECKSUM: "the tokenizer section's CRC32 does not match",
        TensorLayoutChecksum = 35 => TENSOR_LAYOUT_CHECKSUM: "the tensor directory's CRC32 does not match",
        ArtifactChecksum = 36 => ARTIFACT_CHECKSUM: "the whole file's CRC32 does not match",
        LimitExceeded = 37 => LIMIT_EXCEEDED: "a count above a documented cap",
        BadTokenizerKind = 40 => BAD_TOKENIZER_KIND: "the tokenizer header is inconsistent: unknown kind, pre-tokenizer, chat template or flag bits; n_tokens",
        BadToken = 41 => BAD_TOKEN: "a token entry is malformed (type, length, score) or max_token_len is out of range",
        BadMerge = 42 => BAD_MERGE: "a BPE merge entry is malformed (see TOKENIZER.md)",
        BadSpecialToken = 43 => BAD_SPECIAL_TOKEN: "a special token id (BOS, unk, end-of-generation) is not a token of the vocabulary",
        AdapterBadMagic = 64 => ADAPTER_BAD_MAGIC: "not \"ADP1\", \"ASP1\" or \"ALR1\"",
        AdapterUnsupportedVersion = 65 => ADAPTER_UNSUPPORTED_VERSION: "an adapter format version this runtime does not read",
        AdapterBadHeader = 66 => ADAPTER_BAD_HEADER: "header_len, reserved, n_targets 0, stray bytes",
        AdapterTruncated = 67 => ADAPTER_TRUNCATED: "shorter than total_len or than its entries say",
        AdapterChecksum = 68 => ADAPTER_CHECKSUM: "the adapter's artifact CRC32 does not match",
        AdapterParentMismatch = 69 => ADAPTER_PARENT_MISMATCH: "made for another model; the field names the part of the identity that differs",
        AdapterUnknownTarget = 70 => ADAPTER_UNKNOWN_TARGET: "no tensor of the loaded model has that name",
        AdapterDuplicateTarget = 71 => ADAPTER_DUPLICATE_TARGET: "two entries target the same tensor",
        AdapterShapeMismatch = 72 => ADAPTER_SHAPE_MISMATCH: "rows/cols are not the tensor's",
        AdapterBadRank = 73 => ADAPTER_BAD_RANK: "low-rank r outside 1..=min(rows, cols, 256)",
        AdapterBadIndex = 74 => ADAPTER_BAD_INDEX: "a sparse index out of range or not increasing",
        AdapterNonFinite = 75 => ADAPTER_NON_FINITE: "NaN/inf in the scale, a payload or a result",
        AdapterBadEncoding = 76 => ADAPTER_BAD_ENCODING: "dense encoding not f32 (0) / q8_0 (1)",
        AdapterLimitExceeded = 77 => ADAPTER_LIMIT_EXCEEDED: "n_targets above 4096",
        EvalBadJson = 80 => EVAL_BAD_JSON: "a line is not one valid JSON object (the field names the line and column)",
        EvalBadHeader = 81 => EVAL_BAD_HEADER: "header line missing, or suite/version/min_pass_rate bad",
        EvalBadCase = 82 => EVAL_BAD_CASE: "a case field missing, of the wrong type or out of range",
        EvalUnknownField = 83 => EVAL_UNKNOWN_FIELD: "a key the format does not define",
        EvalDuplicateField = 84 => EVAL_DUPLICATE_FIELD: "a key twice in one line",
        EvalDuplicateId = 85 => EVAL_DUPLICATE_ID: "two cases with the same id",
        EvalBadMatchRule = 86 => EVAL_BAD_MATCH_RULE: "match is not \"exact\", \"trim\" or \"prefix\"",
        EvalLimitExceeded = 87 => EVAL_LIMIT_EXCEEDED: "file > 1 MiB, > 512 cases, a string over its cap, nesting",
        EvalNoCases = 88 => EVAL_NO_CASES: "a header and no cases",
        GrammarSyntax = 96 => GRAMMAR_SYNTAX: "the GBNF text does not parse (the field names the rule, the value is the byte offset)",
        GrammarUndefinedRule = 97 => GRAMMAR_UNDEFINED_RULE: "a rule is referenced but never defined, or there is no root rule",
        GrammarLeftRecursion = 98 => GRAMMAR_LEFT_RECURSION: "a rule can start with itself (directly, through nullable rules, or a repetition of something empty)",
        GrammarEmptyLanguage = 99 => GRAMMAR_EMPTY_LANGUAGE: "the grammar admits no string",
        GrammarLimitExceeded = 100 => GRAMMAR_LIMIT_EXCEEDED: "grammar text over 1 MiB, over 16384 rules or 2^20 symbols, a repetition bound over 1024",
        SchemaInvalid = 101 => SCHEMA_INVALID: "the JSON Schema is not JSON, or a keyword has the wrong type or an impossible value (the field names its path)",
        SchemaUnsupported = 102 => SCHEMA_UNSUPPORTED: "a keyword (or combination) outside the supported subset, named by its path",
        SchemaTooDeep = 103 => SCHEMA_TOO_DEEP: "the schema nests deeper than 32 levels (or its JSON deeper than 128)",
        SessionBadMagic = 112 => SESSION_BAD_MAGIC: "a session snapshot does not start with \"SES1\"",
        SessionUnsupportedVersion = 113 => SESSION_UNSUPPORTED_VERSION: "a snapshot format version this runtime does not read",
        SessionTruncated = 114 => SESSION_TRUNCATED: "the snapshot is shorter than its header or its total_len",
        SessionBadHeader = 115 => SESSION_BAD_HEADER: "a snapshot header field is inconsistent (header_len, total_len, flags, n_past, sampling, sizes)",
        SessionChecksum = 116 => SESSION_CHECKSUM: "the snapshot's CRC32 does not match (damaged)",
        SessionModelMismatch = 117 => SESSION_MODEL_MISMATCH: "saved from another model or package; the field names the part of the identity that differs",
        SessionAdapterMismatch = 118 => SESSION_ADAPTER_MISMATCH: "saved with another adapter stack (count or assembly-state CRC)",
        SessionKvDtypeMismatch = 119 => SESSION_KV_DTYPE_MISMATCH: "saved with another KV cache dtype (the KV_F16 load flag)",
        SessionContextTooSmall = 120 => SESSION_CONTEXT_TOO_SMALL: "the saved conversation has more positions than the loaded context_len",
        SessionBadToken = 121 => SESSION_BAD_TOKEN: "a token id in the snapshot is not below vocab_size",
    }
}

abi_enum! {
    /// What `read_result` can read (its `kind` argument), `TRL_RESULT_*`.
    pub enum ResultKind in result_kind {
        Text = 0 => TEXT: "unread output text, whole UTF-8 characters; reading consumes it",
        Tokens = 1 => TOKENS: "generated token ids of the current generation, u32 LE each",
        PromptTokens = 2 => PROMPT_TOKENS: "prompt token ids of the current generation, u32 LE each",
        State = 3 => STATE: "16 bytes: state, stop_reason, prompt_tokens, generated_tokens (u32 LE each)",
        Tokenized = 4 => TOKENIZED: "token ids from the last tokenize call, u32 LE each",
        Logits = 5 => LOGITS: "vocab_size f32 LE: the logits that chose the last generated token, or the prompt's last logits",
        EvalSidecar = 6 => EVAL_SIDECAR: "the sidecar JSON of the last successful run_eval (whole value)",
        ChatPrompt = 7 => CHAT_PROMPT: "the UTF-8 text of the last successful render_chat (whole value)",
        ScoreLogprobs = 8 => SCORE_LOGPROBS: "f32 LE per scored token: ln P(token | the tokens before it), from the last successful score_tokens",
        ScoreArgmax = 9 => SCORE_ARGMAX: "u32 LE per scored position: the most likely next token there, from the last successful score_tokens",
        GrammarStats = 10 => GRAMMAR_STATS: "36 bytes: constrained, masked_steps, mask_cache_hits, mask_cache_entries (u32), mask_ms (f32), trie_nodes (u32), trie_build_ms (f32), grammar_rules, whole_mask_steps (u32)",
        Grammar = 11 => GRAMMAR: "the GBNF text of the grammar set_grammar set (for a JSON Schema, the grammar it compiled to); empty when none",
        LoadProgress = 12 => LOAD_PROGRESS: "24 bytes: total, received, verified (u64 LE each) of the current or last load; readable with no model loaded",
        Session = 13 => SESSION: "the SES1 snapshot of the last successful save_session (whole value; abi/FORMAT.md \"Session snapshots\")",
    }
}

abi_enum! {
    /// The state of the current generation (first word of `TRL_RESULT_STATE`), `TRL_STATE_*`.
    pub enum GenState in gen_state {
        Idle = 0 => IDLE: "no generation since load, reset, restore_session or an adapter change",
        Running = 1 => RUNNING: "generate_step produces more tokens",
        Finished = 2 => FINISHED: "the generation ended; stop_reason says why",
    }
}

abi_enum! {
    /// Why a generation finished (second word of `TRL_RESULT_STATE`), `TRL_STOP_*`.
    pub enum StopReason in stop_reason {
        None = 0 => NONE: "not finished",
        EndOfGeneration = 1 => END_OF_GENERATION: "the model produced an end-of-generation token",
        MaxTokens = 2 => MAX_TOKENS: "max_new_tokens were generated",
        StopString = 3 => STOP_STRING: "the output reached a stop string",
        ContextFull = 4 => CONTEXT_FULL: "the KV cache has no room for another token",
        GrammarComplete = 5 => GRAMMAR_COMPLETE: "the output is a complete sentence of the grammar and no token can extend it",
        GrammarIncomplete = 6 => GRAMMAR_INCOMPLETE: "max_new_tokens ran out, or no token could continue, before the output was a complete sentence of the grammar",
    }
}

/// One flag bit of an export's `flags` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    /// The header constant's suffix after its group prefix (`TRL_GEN_` + `CONTINUE`).
    pub name: &'static str,
    pub bit: u32,
    pub meaning: &'static str,
}

/// Declares each flag as a `u32` constant, the group's table and the mask of every defined bit.
macro_rules! flag_set {
    ($(#[$meta:meta])* $table:ident, $known:ident { $($konst:ident = $bit:literal => $name:literal: $meaning:literal,)* }) => {
        $(#[doc = $meaning] pub const $konst: u32 = $bit;)*
        $(#[$meta])*
        pub const $table: &[Flag] = &[$(Flag { name: $name, bit: $konst, meaning: $meaning },)*];
        /// Every bit the group defines; any other bit is INVALID_ARGUMENT.
        pub const $known: u32 = 0 $(| $konst)*;
        const _: () = assert!(single_distinct_bits($table), concat!(stringify!($table), ": flags must be distinct single bits"));
    };
}

const fn single_distinct_bits(flags: &[Flag]) -> bool {
    let mut seen = 0u32;
    let mut i = 0;
    while i < flags.len() {
        let bit = flags[i].bit;
        if bit.count_ones() != 1 || seen & bit != 0 {
            return false;
        }
        seen |= bit;
        i += 1;
    }
    true
}

flag_set! {
    /// `load_model` flags, `TRL_LOAD_*`.
    LOAD_FLAGS, LOAD_KNOWN {
        LOAD_KV_F16 = 1 => "KV_F16": "KV cache in IEEE f16: half the KV memory; logits differ slightly from the f32 cache",
    }
}

flag_set! {
    /// `generate_start` / `generate` flags, `TRL_GEN_*`.
    GEN_FLAGS, GEN_KNOWN {
        GEN_PARSE_SPECIAL = 1 => "PARSE_SPECIAL": "recognise special-token text such as <|im_start|> in the prompt",
        GEN_CONTINUE = 2 => "CONTINUE": "keep the KV cache: the prompt extends the conversation so far",
        GEN_IGNORE_EOG = 4 => "IGNORE_EOG": "do not stop at end-of-generation tokens (exact token counts)",
    }
}

flag_set! {
    /// `render_chat` flags, `TRL_CHAT_*`.
    CHAT_FLAGS, CHAT_KNOWN {
        CHAT_ADD_GENERATION_PROMPT = 1 => "ADD_GENERATION_PROMPT": "end with the opening of an assistant turn, so that generation writes the answer",
        CHAT_CONTINUE = 2 => "CONTINUE": "the messages continue a conversation in the KV cache that ended on the end-of-turn token: render only what follows it",
        CHAT_NO_DEFAULT_SYSTEM = 4 => "NO_DEFAULT_SYSTEM": "do not put the template's default system prompt first when messages[0] is not a system message",
    }
}

flag_set! {
    /// `set_grammar` flags, `TRL_GRAMMAR_*`: without JSON_SCHEMA the bytes are GBNF.
    GRAMMAR_FLAGS, GRAMMAR_KNOWN {
        GRAMMAR_JSON_SCHEMA = 1 => "JSON_SCHEMA": "the bytes are a JSON Schema (the supported subset), compiled to a grammar",
    }
}

/// The `TRL_GEN_*` bits `tokenize` accepts (it has no flags of its own).
pub const TOKENIZE_KNOWN: u32 = GEN_PARSE_SPECIAL;

/// A group of numeric constants as the header (`#define {header_prefix}{NAME} {value}u`) and the JS
/// wrapper (`export const {js_object} = Object.freeze({ NAME: value, ... })`) spell them.
pub struct ConstantGroup {
    pub header_prefix: &'static str,
    pub js_object: &'static str,
    pub entries: &'static [(&'static str, u32)],
}

const fn flag_entries<const N: usize>(flags: &[Flag]) -> [(&'static str, u32); N] {
    let mut out = [("", 0); N];
    let mut i = 0;
    while i < N {
        out[i] = (flags[i].name, flags[i].bit);
        i += 1;
    }
    out
}

const LOAD_FLAG_ENTRIES: [(&str, u32); LOAD_FLAGS.len()] = flag_entries(LOAD_FLAGS);
const GEN_FLAG_ENTRIES: [(&str, u32); GEN_FLAGS.len()] = flag_entries(GEN_FLAGS);
const CHAT_FLAG_ENTRIES: [(&str, u32); CHAT_FLAGS.len()] = flag_entries(CHAT_FLAGS);
const GRAMMAR_FLAG_ENTRIES: [(&str, u32); GRAMMAR_FLAGS.len()] = flag_entries(GRAMMAR_FLAGS);

/// Every named numeric constant of the ABI, by group.
pub const CONSTANT_GROUPS: &[ConstantGroup] = &[
    ConstantGroup { header_prefix: "TRL_STATUS_", js_object: "Status", entries: Status::TABLE },
    ConstantGroup { header_prefix: "TRL_RESULT_", js_object: "ResultKind", entries: ResultKind::TABLE },
    ConstantGroup { header_prefix: "TRL_STATE_", js_object: "GenState", entries: GenState::TABLE },
    ConstantGroup { header_prefix: "TRL_STOP_", js_object: "StopReason", entries: StopReason::TABLE },
    ConstantGroup { header_prefix: "TRL_LOAD_", js_object: "LoadFlags", entries: &LOAD_FLAG_ENTRIES },
    ConstantGroup { header_prefix: "TRL_GEN_", js_object: "GenFlags", entries: &GEN_FLAG_ENTRIES },
    ConstantGroup { header_prefix: "TRL_CHAT_", js_object: "ChatFlags", entries: &CHAT_FLAG_ENTRIES },
    ConstantGroup { header_prefix: "TRL_GRAMMAR_", js_object: "GrammarFlags", entries: &GRAMMAR_FLAG_ENTRIES },
];

/// A WebAssembly value type, as the module's type section declares an export's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmType {
    I32,
    I64,
    F32,
    F64,
}

impl WasmType {
    pub const fn name(self) -> &'static str {
        match self {
            WasmType::I32 => "i32",
            WasmType::I64 => "i64",
            WasmType::F32 => "f32",
            WasmType::F64 => "f64",
        }
    }

    /// The C type the header uses for it (`uint32_t` also stands for `trl_ptr` and `trl_status`).
    pub const fn c_type(self) -> &'static str {
        match self {
            WasmType::I32 => "uint32_t",
            WasmType::I64 => "uint64_t",
            WasmType::F32 => "float",
            WasmType::F64 => "double",
        }
    }
}

/// A function crossing the module boundary: its name, parameters (name, wasm type) and result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: &'static str,
    pub params: &'static [(&'static str, WasmType)],
    pub result: Option<WasmType>,
}

use WasmType::{F32, F64, I32, I64};

const fn export(name: &'static str, params: &'static [(&'static str, WasmType)], result: WasmType) -> Function {
    Function { name, params, result: Some(result) }
}

/// Every function the release module exports, in the header's order, with wasm-level signatures
/// (a `u64` is an `i64`; `u32`s are `i32`s). Pointers are `i32` offsets into linear memory.
pub const EXPORTS: &[Function] = &[
    export("abi_version", &[], I32),
    export("alloc", &[("size", I32)], I32),
    export("dealloc", &[("ptr", I32)], I32),
    export("load_model", &[("ptr", I32), ("len", I32), ("context_len", I32), ("flags", I32)], I32),
    export("load_begin", &[("total_len", I32), ("context_len", I32), ("flags", I32)], I32),
    export("load_append", &[("ptr", I32), ("len", I32)], I32),
    export("load_finish", &[], I32),
    export("load_abort", &[], I32),
    export("unload_model", &[], I32),
    export(
        "set_sampling",
        &[("temperature", F32), ("top_k", I32), ("top_p", F32), ("min_p", F32), ("repetition_penalty", F32), ("repetition_window", I32), ("seed", I64)],
        I32,
    ),
    export("add_stop_string", &[("ptr", I32), ("len", I32)], I32),
    export("clear_stop_strings", &[], I32),
    export("set_grammar", &[("ptr", I32), ("len", I32), ("flags", I32)], I32),
    export("clear_grammar", &[], I32),
    export("tokenize", &[("ptr", I32), ("len", I32), ("flags", I32)], I32),
    export("generate_start", &[("ptr", I32), ("len", I32), ("max_new_tokens", I32), ("flags", I32)], I32),
    export("generate_step", &[("max_steps", I32)], I32),
    export("generate", &[("ptr", I32), ("len", I32), ("max_new_tokens", I32), ("flags", I32)], I32),
    export("reset", &[], I32),
    export("save_session", &[], I32),
    export("restore_session", &[("ptr", I32), ("len", I32)], I32),
    export("validate_adapter_delta", &[("ptr", I32), ("len", I32)], I32),
    export("apply_adapter_delta", &[("ptr", I32), ("len", I32)], I32),
    export("remove_last_adapter", &[], I32),
    export("reset_adapters", &[], I32),
    export("read_result", &[("kind", I32), ("dst_ptr", I32), ("dst_cap", I32), ("len_out_ptr", I32)], I32),
    export("run_eval", &[("ptr", I32), ("len", I32), ("flags", I32)], I32),
    export("render_chat", &[("ptr", I32), ("len", I32), ("flags", I32)], I32),
    export("score_tokens", &[("ptr", I32), ("n_tokens", I32), ("first_scored", I32), ("flags", I32)], I32),
    export("read_diagnostics", &[("dst_ptr", I32), ("dst_cap", I32)], I32),
    export("last_error", &[("dst_ptr", I32), ("dst_cap", I32), ("len_out_ptr", I32)], I32),
];

/// What the threaded flavour exports beside [`EXPORTS`] (`abi/THREADS.md`): a worker's stack, the
/// worker loop a host runs on each worker instance, and the call that ends those loops.
pub const THREAD_EXPORTS: &[Function] =
    &[export("worker_stack_top", &[("worker", I32)], I32), export("worker_run", &[("worker", I32)], I32), export("stop_workers", &[], I32)];

/// The threaded flavour's global naming the stack pointer, exported (mutable) so a host can point
/// each worker instance at its own stack before `worker_run`.
pub const STACK_POINTER_GLOBAL: &str = "__stack_pointer";

/// The module's linear memory, exported under this name.
pub const EXPORTED_MEMORY: &str = "memory";

/// Immutable `i32` globals the linker (wasm-ld) exports on its own: the end of static data and the
/// start of the allocator's heap. Informational only; no host needs them.
pub const LINKER_GLOBALS: &[&str] = &["__data_end", "__heap_base"];

/// What the module imports, all from module `env`.
pub const IMPORT_MODULE: &str = "env";
pub const IMPORTS: &[Function] = &[Function { name: "trl_now_ms", params: &[], result: Some(F64) }];

const fn exports_distinct(fns: &[Function]) -> bool {
    let mut i = 0;
    while i < fns.len() {
        let mut j = i + 1;
        while j < fns.len() {
            if str_eq(fns[i].name, fns[j].name) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const _: () = assert!(exports_distinct(EXPORTS), "EXPORTS: an export is listed twice");
const _: () = assert!(exports_distinct(THREAD_EXPORTS), "THREAD_EXPORTS: an export is listed twice");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_codes() {
        assert_eq!(Status::ALL.len(), Status::TABLE.len());
        for &s in Status::ALL {
            assert_eq!(Status::from_code(s.code()), Some(s));
            assert!(Status::TABLE.contains(&(s.name(), s.code())), "{s:?}");
            assert!(!s.meaning().is_empty());
        }
        for &k in ResultKind::ALL {
            assert_eq!(ResultKind::from_code(k.code()), Some(k));
        }
        let top = ResultKind::TABLE.iter().map(|&(_, code)| code).max().unwrap();
        assert_eq!(ResultKind::from_code(top + 1), None);
        assert_eq!(ResultKind::from_code(13), Some(ResultKind::Session));
        assert_eq!(Status::from_code(8), None);
        assert_eq!(status::BUFFER_TOO_SMALL, Status::BufferTooSmall.code());
        assert_eq!(result_kind::EVAL_SIDECAR, 6);
    }

    #[test]
    fn flag_masks_cover_exactly_their_tables() {
        assert_eq!(GEN_KNOWN, 7);
        assert_eq!(LOAD_KNOWN, LOAD_KV_F16);
        assert_eq!(TOKENIZE_KNOWN & !GEN_KNOWN, 0);
        let gen = CONSTANT_GROUPS.iter().find(|g| g.header_prefix == "TRL_GEN_").unwrap();
        assert_eq!(gen.entries, &[("PARSE_SPECIAL", 1), ("CONTINUE", 2), ("IGNORE_EOG", 4)]);
        assert_eq!(CHAT_KNOWN, 7);
    }
}
