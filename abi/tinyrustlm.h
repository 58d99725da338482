/*
 * tinyrustlm.h — the raw ABI of the TinyRustLM WebAssembly module (ABI version 1).
 *
 * The module (`tinyrustlm.wasm`, built for wasm32-unknown-unknown with SIMD128) exports the
 * functions below and its linear memory as `memory`. It imports exactly one function:
 *
 *     env.trl_now_ms : () -> f64    milliseconds from a monotonic clock (JS: performance.now()).
 *                                   Used only for the tokens/s figures in the diagnostics.
 *
 * It also exports two immutable i32 globals that the linker (wasm-ld) adds on its own:
 * `__data_end` (end of the static data) and `__heap_base` (where the allocator's heap begins).
 * They are informational, not part of the ABI: no call needs them and their values change from
 * build to build.
 *
 * Wasm-level signatures. Every uint32_t, trl_ptr and trl_status below is a wasm i32, uint64_t an
 * i64, float an f32. Wasm integers have no sign: the module reads each i32 as a u32, so a value
 * above 2^31 - 1 may be passed as the negative i32 of the same bits, and hosts whose i32 is signed
 * (JavaScript, Java) see such results as negative numbers (`x >>> 0` in JS gives the u32 back).
 * The one i64 argument, set_sampling's `seed`, is a BigInt in JS (`BigInt.asUintN(64, s)` and
 * `BigInt.asIntN(64, s)` both give the same seed).
 *
 * Conventions
 * - All pointers are 32-bit offsets into the module's linear memory; all integers are little-endian.
 * - Host buffers. Every pointer a host passes (`ptr`, `dst_ptr`, `len_out_ptr`) must lie, with its
 *   length, inside ONE live buffer obtained from trl `alloc` (not released with `dealloc`, not given to `load_model`).
 *   Anything else — NULL, an address inside the module's own memory, a range running past the end
 *   of a buffer, a `ptr + len` that overflows — returns TRL_STATUS_OUT_OF_BOUNDS. A zero length is
 *   always allowed and then the pointer is not looked at (except for `load_model`, see there).
 * - Out-lengths. `read_result` and `last_error` store a byte count at `len_out_ptr` (4 bytes). It
 *   may lie in the same host buffer as the destination [dst_ptr, dst_ptr + dst_cap), but must not
 *   overlap it (INVALID_ARGUMENT; nothing is read or consumed). With dst_cap 0 there is no
 *   destination to overlap.
 * - Every function except `alloc` and `abi_version` returns a status (0 = TRL_STATUS_OK). On any
 *   non-zero status the call changed nothing: no engine state, no host buffer, nothing consumed;
 *   `last_error` then describes the failure (field, value, rule).
 * - The module never traps on any argument values. (A trap would be a bug; please report it.)
 * - Misuse, per export: each "Errors:" line below lists what the export returns for a bad pointer
 *   or length (OUT_OF_BOUNDS, or INVALID_ARGUMENT where a whole buffer is required), a value out of
 *   range, a call in the wrong order or a second call that makes no sense (WRONG_STATE: no model,
 *   model already loaded, nothing to continue), and memory running out (OUT_OF_MEMORY, also when
 *   the host caps linear memory). A call after a failed call behaves exactly as if the failed call
 *   had never been made. Calls not marked otherwise may be repeated freely.
 * - Single-threaded: do not call into one instance from two threads.
 *
 * Typical session
 *     p = alloc(n); write package bytes at p; load_model(p, n, 0, 0)   // module now owns p
 *       (or, as the bytes arrive: load_begin(n, 0, 0); load_append(chunk, k)...; load_finish())
 *     set_sampling(...)                                                  // optional; greedy default
 *     q = alloc(m); write prompt at q; generate_start(q, m, 128, TRL_GEN_PARSE_SPECIAL)
 *     while (state == RUNNING) { generate_step(1); read_result(TRL_RESULT_TEXT, ...) }
 *     read_diagnostics(d, 128); dealloc(q)
 */
#ifndef TINYRUSTLM_H
#define TINYRUSTLM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TRL_ABI_VERSION 1u

/* ---- Status codes ------------------------------------------------------------------------- */
/* Call-level. */
#define TRL_STATUS_OK                      0u
#define TRL_STATUS_OUT_OF_BOUNDS           1u  /* a (ptr, len) is not inside one live host buffer */
#define TRL_STATUS_INVALID_ARGUMENT        2u  /* a value outside its documented range; unknown flag bits */
#define TRL_STATUS_WRONG_STATE             3u  /* no model loaded / already loaded / no generation running */
#define TRL_STATUS_OUT_OF_MEMORY           4u  /* an allocation failed; nothing changed */
#define TRL_STATUS_CONTEXT_FULL            5u  /* the prompt does not fit in the remaining context */
#define TRL_STATUS_INVALID_SAMPLING        6u  /* a sampling parameter is out of range */
#define TRL_STATUS_BUFFER_TOO_SMALL        7u  /* dst_cap too small; *len_out = bytes needed */
/* SLM1 package (see FORMAT.md for the rule behind each). */
#define TRL_STATUS_TRUNCATED              16u
#define TRL_STATUS_BAD_MAGIC              17u
#define TRL_STATUS_UNSUPPORTED_VERSION    18u
#define TRL_STATUS_BAD_HEADER_LENGTH      19u
#define TRL_STATUS_BAD_FLAGS              20u
#define TRL_STATUS_BAD_HYPERPARAMETER     21u
#define TRL_STATUS_BAD_SECTION_BOUNDS     22u
#define TRL_STATUS_BAD_ALIGNMENT          23u
#define TRL_STATUS_BAD_PADDING            24u
#define TRL_STATUS_BAD_TENSOR_NAME        25u
#define TRL_STATUS_UNSUPPORTED_DTYPE      26u
#define TRL_STATUS_BAD_TENSOR_SHAPE       27u
#define TRL_STATUS_MISSING_TENSOR         28u
#define TRL_STATUS_DUPLICATE_TENSOR       29u
#define TRL_STATUS_UNKNOWN_TENSOR         30u
#define TRL_STATUS_BAD_TENSOR_DATA        31u
#define TRL_STATUS_BAD_QUANT_MODE         32u
#define TRL_STATUS_BAD_PARAMETER_COUNT    33u
#define TRL_STATUS_TOKENIZER_CHECKSUM     34u
#define TRL_STATUS_TENSOR_LAYOUT_CHECKSUM 35u
#define TRL_STATUS_ARTIFACT_CHECKSUM      36u
#define TRL_STATUS_LIMIT_EXCEEDED         37u  /* a count above a documented cap */
#define TRL_STATUS_BAD_TOKENIZER_KIND     40u
#define TRL_STATUS_BAD_TOKEN              41u
#define TRL_STATUS_BAD_MERGE              42u
#define TRL_STATUS_BAD_SPECIAL_TOKEN      43u
/* Adapter deltas (see FORMAT.md "Adapters" for the rule behind each). */
#define TRL_STATUS_ADAPTER_BAD_MAGIC           64u  /* not "ADP1", "ASP1" or "ALR1" */
#define TRL_STATUS_ADAPTER_UNSUPPORTED_VERSION 65u
#define TRL_STATUS_ADAPTER_BAD_HEADER          66u  /* header_len, reserved, n_targets 0, stray bytes */
#define TRL_STATUS_ADAPTER_TRUNCATED           67u  /* shorter than total_len or than its entries say */
#define TRL_STATUS_ADAPTER_CHECKSUM            68u  /* artifact CRC32 */
#define TRL_STATUS_ADAPTER_PARENT_MISMATCH     69u  /* made for another model; field names the part */
#define TRL_STATUS_ADAPTER_UNKNOWN_TARGET      70u  /* no tensor of the loaded model has that name */
#define TRL_STATUS_ADAPTER_DUPLICATE_TARGET    71u
#define TRL_STATUS_ADAPTER_SHAPE_MISMATCH      72u  /* rows/cols not the tensor's */
#define TRL_STATUS_ADAPTER_BAD_RANK            73u  /* low-rank r outside 1..=min(rows, cols, 256) */
#define TRL_STATUS_ADAPTER_BAD_INDEX           74u  /* sparse index out of range or not increasing */
#define TRL_STATUS_ADAPTER_NON_FINITE          75u  /* NaN/inf in the scale, a payload or a result */
#define TRL_STATUS_ADAPTER_BAD_ENCODING        76u  /* dense encoding not f32 (0) / q8_0 (1) */
#define TRL_STATUS_ADAPTER_LIMIT_EXCEEDED      77u  /* n_targets above 4096 */
/* Eval case files (run_eval; FORMAT.md "Eval cases and sidecars"). The error text names the line. */
#define TRL_STATUS_EVAL_BAD_JSON          80u  /* a line is not one valid JSON object */
#define TRL_STATUS_EVAL_BAD_HEADER        81u  /* header line missing, or suite/version/min_pass_rate bad */
#define TRL_STATUS_EVAL_BAD_CASE          82u  /* a case field missing, of the wrong type or out of range */
#define TRL_STATUS_EVAL_UNKNOWN_FIELD     83u  /* a key the format does not define */
#define TRL_STATUS_EVAL_DUPLICATE_FIELD   84u  /* a key twice in one line */
#define TRL_STATUS_EVAL_DUPLICATE_ID      85u  /* two cases with the same id */
#define TRL_STATUS_EVAL_BAD_MATCH_RULE    86u  /* match is not "exact", "trim" or "prefix" */
#define TRL_STATUS_EVAL_LIMIT_EXCEEDED    87u  /* file > 1 MiB, > 512 cases, a string over its cap, nesting */
#define TRL_STATUS_EVAL_NO_CASES          88u  /* a header and no cases */
/* Grammars and JSON Schemas (set_grammar; README "Structured output"). last_error names the rule
 * (GBNF: `grammar.rule[NAME] (byte offset) = OFFSET`) or the schema path (`schema.properties.age.format`). */
#define TRL_STATUS_GRAMMAR_SYNTAX          96u  /* the GBNF text does not parse */
#define TRL_STATUS_GRAMMAR_UNDEFINED_RULE  97u  /* a rule referenced but never defined; no root rule */
#define TRL_STATUS_GRAMMAR_LEFT_RECURSION  98u  /* a rule can start with itself (also (x?)*-style repetitions) */
#define TRL_STATUS_GRAMMAR_EMPTY_LANGUAGE  99u  /* the grammar admits no string */
#define TRL_STATUS_GRAMMAR_LIMIT_EXCEEDED 100u  /* text > 1 MiB, > 16384 rules or 2^20 symbols, a bound > 1024 */
#define TRL_STATUS_SCHEMA_INVALID         101u  /* not JSON, or a keyword of the wrong type or impossible value */
#define TRL_STATUS_SCHEMA_UNSUPPORTED     102u  /* a keyword or combination outside the subset, by path */
#define TRL_STATUS_SCHEMA_TOO_DEEP        103u  /* schema nesting over 32 levels (JSON over 128) */
/* Session snapshots (restore_session; FORMAT.md "Session snapshots"). last_error names the field. */
#define TRL_STATUS_SESSION_BAD_MAGIC           112u  /* not "SES1" */
#define TRL_STATUS_SESSION_UNSUPPORTED_VERSION 113u
#define TRL_STATUS_SESSION_TRUNCATED           114u  /* shorter than the header or than total_len */
#define TRL_STATUS_SESSION_BAD_HEADER          115u  /* header_len, total_len, flags, n_past, sampling, sizes */
#define TRL_STATUS_SESSION_CHECKSUM            116u  /* the CRC32 does not match: damaged */
#define TRL_STATUS_SESSION_MODEL_MISMATCH      117u  /* another model or package; field names the part */
#define TRL_STATUS_SESSION_ADAPTER_MISMATCH    118u  /* another adapter stack (count or assembly state) */
#define TRL_STATUS_SESSION_KV_DTYPE_MISMATCH   119u  /* saved with another KV dtype (TRL_LOAD_KV_F16) */
#define TRL_STATUS_SESSION_CONTEXT_TOO_SMALL   120u  /* n_past above the loaded context_len */
#define TRL_STATUS_SESSION_BAD_TOKEN           121u  /* a token id not below vocab_size */

typedef uint32_t trl_status;
typedef uint32_t trl_ptr; /* offset into the module's linear memory */

/* ---- Memory --------------------------------------------------------------------------------- */

/* ABI version implemented by the module (TRL_ABI_VERSION). Never fails. */
uint32_t abi_version(void);

/* Allocates a zero-filled host buffer of `size` bytes, 32-byte aligned. Returns its address, or 0
 * on failure (size 0: INVALID_ARGUMENT; more than 1024 live buffers: LIMIT_EXCEEDED; no memory:
 * OUT_OF_MEMORY — read the reason with last_error). The host owns the buffer until `dealloc` or a
 * successful `load_model`. */
trl_ptr alloc(uint32_t size);

/* Releases a buffer from `alloc` (named dealloc, not free, so C hosts can include this header next
 * to <stdlib.h>). INVALID_ARGUMENT if `ptr` is not the start of a live buffer (including one
 * already released or owned by the model). */
trl_status dealloc(trl_ptr ptr);

/* ---- Model ---------------------------------------------------------------------------------- */

/* Validates the SLM1 package in [ptr, ptr+len) and loads it.
 * - (ptr, len) must be exactly one whole buffer from `alloc` (INVALID_ARGUMENT otherwise).
 * - On success the module takes ownership of that buffer (weights are used in place, no copy);
 *   the host must not write to it or free it again.
 * - On failure the buffer stays the host's, unchanged, and no model is loaded.
 * - context_len: KV cache positions; 0 = min(max_context, 2048); > max_context: INVALID_ARGUMENT.
 * - flags: 0 or TRL_LOAD_KV_F16; any other bit is INVALID_ARGUMENT.
 * Errors: INVALID_ARGUMENT (not one whole live buffer: NULL, freed, the model's own, a length that
 * differs; flags; context_len), WRONG_STATE (a model is already loaded, including a second call, or
 * a streaming load is open),
 * OUT_OF_MEMORY (tokenizer tables, tensor directory, KV cache, scratch or sampler: last_error names
 * which; a shorter context_len may fit), and every package status (16..43), each naming the field
 * and rule in last_error. */
trl_status load_model(trl_ptr ptr, uint32_t len, uint32_t context_len, uint32_t flags);

/* load_model flags. */
#define TRL_LOAD_KV_F16 1u /* KV cache in IEEE f16 (round to nearest even on write, widened exactly
                              on read): half the KV memory; logits differ slightly from the f32 cache */

/* ---- Streaming load ------------------------------------------------------------------------- */
/* The same load as load_model, for a package that arrives in chunks (a download, a file read):
 *     load_begin(total_len, context_len, flags); load_append(chunk) ...; load_finish()
 * Each chunk is copied once, into the memory the model will use in place (allocated whole by
 * load_begin, so the package is never held twice), and every check the package takes — the three
 * CRC32s, every header, directory and tokenizer rule, each tensor's scales — runs as soon as the
 * bytes it needs are in (FORMAT.md, "Order of the checks"). A package is refused with the status
 * load_model gives for the same bytes, by the call whose chunk completes what breaks the rule, and
 * the stream then ends: its memory is freed and nothing is kept (begin again to retry). load_model
 * itself is this stream with every byte already received: one implementation, one order.
 * read_result(TRL_RESULT_LOAD_PROGRESS) gives (total, received, verified) at any time: `verified`
 * counts the leading bytes that passed every check they take part in but the artifact CRC, which
 * passes only with the last byte (verified = total then). While a stream is open, load_model and a
 * second load_begin are WRONG_STATE; the other exports work as without a model. */

/* Starts a stream of a package of total_len bytes: allocates them (OUT_OF_MEMORY when they do not
 * fit; nothing is kept). context_len and flags as for load_model (flags are checked here,
 * INVALID_ARGUMENT; context_len against max_context once the header is in). total_len below the
 * smallest package already fails here with load_model's status for it (TRUNCATED, no stream).
 * Errors: WRONG_STATE (a model is loaded or a stream is open), INVALID_ARGUMENT, OUT_OF_MEMORY,
 * TRUNCATED. On failure no stream exists and nothing changed. */
trl_status load_begin(uint32_t total_len, uint32_t context_len, uint32_t flags);

/* Appends the chunk [ptr, ptr+len) (inside a host buffer; the module copies it, the buffer stays
 * the host's) and runs every check it completes. Chunks may have any size, 0 included.
 * Errors that leave the stream as it was (nothing consumed): WRONG_STATE (no stream is open),
 * OUT_OF_BOUNDS. Errors that end the stream (memory freed, no model loaded; the progress keeps
 * where it stopped): INVALID_ARGUMENT (the chunk runs past total_len; context_len > max_context),
 * OUT_OF_MEMORY (tensor directory, tokenizer tables), and every package status (16..43) with the
 * field and rule in last_error. */
trl_status load_append(trl_ptr ptr, uint32_t len);

/* Ends the stream: when all total_len bytes arrived and passed, the model is loaded exactly as by
 * load_model. The stream is over either way. Errors: WRONG_STATE (no stream is open), TRUNCATED
 * (fewer bytes than total_len arrived; field load.received), OUT_OF_MEMORY (KV cache, scratch or
 * sampler; a shorter context_len may fit). On failure no model is loaded. */
trl_status load_finish(void);

/* Ends the stream without loading and frees its memory. WRONG_STATE if no stream is open (nothing
 * changes). */
trl_status load_abort(void);

/* Frees the model, its KV cache and the session. WRONG_STATE if none is loaded. */
trl_status unload_model(void);

/* ---- Sampling ------------------------------------------------------------------------------- */

/* Sets sampling for the next generate_start (a running generation keeps its settings until it is
 * continued). Pipeline: repetition penalty → greedy if temperature == 0 → top-k → softmax(T) →
 * top-p → min-p → draw.
 *   temperature         finite, 0..=100 (0 = greedy: argmax, lowest id on ties)
 *   top_k               0 = off
 *   top_p               (0, 1]; 1 = off
 *   min_p               [0, 1); 0 = off
 *   repetition_penalty  1..=10 (1 = off): logit > 0 ? logit / p : logit * p, once per distinct
 *                       token among the last repetition_window tokens (prompt and output)
 *   seed                seeds the PRNG: xoshiro256** whose state is four SplitMix64 outputs from
 *                       `seed`; a draw is (next_u64 >> 40) * 2^-24. Same seed ⇒ same tokens on
 *                       every host. The stream restarts at each generate_start without CONTINUE.
 * Errors: INVALID_SAMPLING (last_error names the field; float values are shown as f32 bits). */
trl_status set_sampling(float temperature, uint32_t top_k, float top_p, float min_p,
                        float repetition_penalty, uint32_t repetition_window, uint64_t seed);

/* Adds a stop string (1..=64 bytes; at most 8): generation stops when the output contains it, and
 * the text returned ends just before it. Text that could still become a stop string is held back
 * from TRL_RESULT_TEXT until it is decided. No model is needed. Errors: OUT_OF_BOUNDS,
 * INVALID_ARGUMENT (length), LIMIT_EXCEEDED (a 9th string), OUT_OF_MEMORY. */
trl_status add_stop_string(trl_ptr ptr, uint32_t len);
/* Removes every stop string. Never fails (no model is needed). */
trl_status clear_stop_strings(void);

/* ---- Grammar-constrained generation (README "Structured output") --------------------------- */

/* Compiles a grammar that every following generation is constrained by, replacing the previous
 * one: [ptr, ptr+len) is GBNF text (llama.cpp's format), or with TRL_GRAMMAR_JSON_SCHEMA a JSON
 * Schema of the supported subset (compiled to GBNF; read it back with TRL_RESULT_GRAMMAR). No model
 * is needed; a generation already running keeps the grammar it started with.
 * At each step only tokens that keep the output a prefix of a sentence of the grammar can be
 * sampled (the others get logit -inf before the sampler, whose arithmetic is otherwise unchanged,
 * so greedy and seeded sampling stay reproducible); end-of-generation tokens only where the output
 * is complete (never with TRL_GEN_IGNORE_EOG). A generation ends with TRL_STOP_GRAMMAR_COMPLETE when
 * the output is complete and no token can extend it, and with TRL_STOP_GRAMMAR_INCOMPLETE when
 * max_new_tokens run out (or no token can continue) before it is complete: such text is not a
 * sentence of the grammar. Stop strings still apply and cut the text wherever they match (the cut
 * text is not checked against the grammar); CONTEXT_FULL ends it as always. Each generate_start,
 * CONTINUE included, starts at the grammar's beginning. The first constrained generation builds a
 * byte trie of the vocabulary (once per load); masks are cached per grammar state (TRL_RESULT_GRAMMAR_STATS).
 * Errors (nothing changes, the previous grammar stays): OUT_OF_BOUNDS, INVALID_ARGUMENT (len 0,
 * flags), OUT_OF_MEMORY, TRL_STATUS_GRAMMAR_* and TRL_STATUS_SCHEMA_* (96..103). */
trl_status set_grammar(trl_ptr ptr, uint32_t len, uint32_t flags);
/* Later generations are unconstrained. Never fails (no model is needed). */
trl_status clear_grammar(void);

#define TRL_GRAMMAR_JSON_SCHEMA 1u /* the bytes are a JSON Schema (the supported subset), compiled to a grammar */

/* ---- Tokens and generation ---------------------------------------------------------------- */

#define TRL_GEN_PARSE_SPECIAL 1u /* recognise special-token text such as <|im_start|> in the prompt */
#define TRL_GEN_CONTINUE      2u /* keep the KV cache: the prompt extends the conversation so far */
#define TRL_GEN_IGNORE_EOG    4u /* do not stop at end-of-generation tokens (exact token counts) */

/* Tokenizes text (flags: 0 or TRL_GEN_PARSE_SPECIAL); read the ids with TRL_RESULT_TOKENIZED.
 * The ids are those a prompt gets, BOS included when the tokenizer adds one: an empty text gives
 * [BOS], or no ids without BOS. PARSE_SPECIAL reads control-token text (`<|im_start|>`,
 * `<start_of_turn>`) as those tokens; user-defined tokens (Gemma's runs of spaces and newlines,
 * its HTML tags) are read as tokens either way, as llama.cpp does (TOKENIZER.md §3).
 * Errors: WRONG_STATE (no model), OUT_OF_BOUNDS, INVALID_ARGUMENT (flags), OUT_OF_MEMORY (the ids of
 * a text this long, or the tokenizer's working memory for it, do not fit). */
trl_status tokenize(trl_ptr ptr, uint32_t len, uint32_t flags);

/* Starts a generation: tokenizes the prompt (adding BOS if the model's tokenizer does so, except
 * with CONTINUE), runs it through the model (prefill) and sets the state to RUNNING. Without
 * CONTINUE the KV cache is emptied first and the sampler reseeded.
 * "Empty prompt" below means one that yields no tokens, not one of no bytes: with a tokenizer that
 * adds BOS, len 0 is the one-token prompt [BOS] and is valid; without BOS, len 0 (or text that
 * encodes to no tokens) is INVALID_ARGUMENT unless CONTINUE has a conversation to extend.
 * max_new_tokens: the generation finishes after this many tokens (0: finishes at once).
 * Errors: WRONG_STATE (no model; CONTINUE with no conversation), OUT_OF_BOUNDS, INVALID_ARGUMENT
 * (flags; empty prompt with nothing to continue), CONTEXT_FULL (prompt does not fit; nothing
 * changed), OUT_OF_MEMORY (the prompt's ids do not fit in memory; nothing changed). */
trl_status generate_start(trl_ptr ptr, uint32_t len, uint32_t max_new_tokens, uint32_t flags);

/* Generates up to max_steps tokens. The generation FINISHES on an end-of-generation token (its id is
 * in TRL_RESULT_TOKENS, its text is not in TRL_RESULT_TEXT), after max_new_tokens, on a stop string,
 * or when the context is full (stop reasons below). The host may stop calling at any point and
 * start a new generation, continue one (CONTINUE) or `reset`.
 * max_steps 0 is allowed: OK, and nothing happens (the generation stays RUNNING).
 * Errors: WRONG_STATE (no model, or no generation RUNNING: before generate_start, after it
 * finished, after reset; also with max_steps 0), OUT_OF_MEMORY (the output text could not grow). */
trl_status generate_step(uint32_t max_steps);

/* generate_start + generate_step until finished, in one call. Errors: those of both. */
trl_status generate(trl_ptr ptr, uint32_t len, uint32_t max_new_tokens, uint32_t flags);

/* Empties the KV cache and the session (keeps the model, sampling and stop strings); repeating it
 * changes nothing more. Errors: WRONG_STATE (no model). */
trl_status reset(void);

/* ---- Session snapshots ---------------------------------------------------------------------- */

/* Saves the conversation (FORMAT.md "Session snapshots": the token history, the last logits, the
 * sampled token not yet run, the sampler's parameters and random stream, and the KV cache up to
 * kv_len, bound to the package, the adapter stack, the KV dtype) as an SES1 snapshot, read whole
 * with read_result(TRL_RESULT_SESSION). A RUNNING generation may be saved; its output text, stop
 * strings and grammar position are not part of the snapshot. Nothing but that result changes; on
 * failure the previous snapshot stays.
 * Errors: WRONG_STATE (no model, or an empty KV cache: nothing to save), OUT_OF_MEMORY. */
trl_status save_session(void);

/* Restores the conversation of the snapshot in [ptr, ptr+len) (the host keeps its buffer): after
 * every byte is checked against the loaded model, the KV cache, token history, last logits and
 * sampler state are the snapshot's, and the generation state is IDLE; generate_start with
 * TRL_GEN_CONTINUE then gives, for greedy and seeded sampling alike, exactly the tokens the saved
 * conversation would have given (the same sampling set: a different one restarts the random stream
 * from its seed, as it would have). The snapshot may come from another instance of the same package
 * with the same adapters, applied in the same order, and the same KV dtype; the context may differ
 * if it holds n_past positions. On any error nothing changes: KV cache, generation, sampler.
 * Errors: WRONG_STATE (no model), OUT_OF_BOUNDS, the session statuses 112..121 (last_error names
 * the field, e.g. header.tensor_layout_crc or header.assembly_state_crc), OUT_OF_MEMORY. */
trl_status restore_session(trl_ptr ptr, uint32_t len);

/* ---- Chat templates ------------------------------------------------------------------------- */

#define TRL_CHAT_ADD_GENERATION_PROMPT 1u /* end with the opening of an assistant turn */
#define TRL_CHAT_CONTINUE              2u /* render only what follows the end-of-turn token in the cache */
#define TRL_CHAT_NO_DEFAULT_SYSTEM     4u /* never put the template's default system prompt first */

/* Renders a conversation with the loaded package's chat template (diagnostics `chat_template`) and
 * keeps the text for read_result(TRL_RESULT_CHAT_PROMPT); pass it to generate_start with
 * TRL_GEN_PARSE_SPECIAL. The host keeps its buffer; nothing else changes (not the KV cache, not
 * the generation).
 * [ptr, ptr+len) holds the message list, little-endian, no padding, no bytes after the last message:
 *     off 0   u32  n_messages
 *     then n_messages times:
 *             u32  role_len      role:    role_len bytes of UTF-8 ("system", "user", "assistant", ...)
 *             u32  content_len   content: content_len bytes of UTF-8
 *   e.g. one user message "Hi": 01 00 00 00 | 04 00 00 00 "user" | 02 00 00 00 "Hi" (18 bytes).
 *   Each message takes at least 8 bytes, so n_messages > (len - 4) / 8 is refused before anything
 *   is allocated.
 * Templates (diagnostics `chat_template`, FORMAT.md):
 *   1 ChatML, 2 ChatML (Qwen): `<|im_start|>{role}\n{content}<|im_end|>\n` per message, roles and
 *     contents as given (special-token text inside them is not escaped); ADD_GENERATION_PROMPT
 *     appends `<|im_start|>assistant\n`. Without CONTINUE or NO_DEFAULT_SYSTEM, when messages[0] is
 *     not a `system` message (or there are none) the template's default system prompt is put first
 *     (1: SmolLM2's, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"; 2:
 *     Qwen's, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.").
 *   3 Gemma (Gemma 3's template; BOS comes from the tokenizer): per message
 *     `<start_of_turn>{role}\n{content}<end_of_turn>\n`, the role `assistant` written `model`,
 *     each content trimmed of surrounding whitespace; a `system` messages[0] has no turn of its
 *     own: its content, then "\n\n", starts the next message's content. ADD_GENERATION_PROMPT
 *     appends `<start_of_turn>model\n`. No default system prompt.
 * CONTINUE is for a conversation whose previous answer ended on the end-of-turn token
 * (`<|im_end|>`, `<end_of_turn>`; it is in the KV cache): the text starts with the "\n" that
 * follows it, messages are turns as they come, and no system prompt is added; use the result
 * with TRL_GEN_CONTINUE.
 * Errors: WRONG_STATE (no model), OUT_OF_BOUNDS, INVALID_ARGUMENT (flags; a package with no chat
 * template; the list: bytes ending inside a field, n_messages too large for len, a role or content
 * not UTF-8, bytes after the last message — last_error names the message and part, e.g.
 * messages[2].content_len, and the value is its byte offset), OUT_OF_MEMORY. */
trl_status render_chat(trl_ptr ptr, uint32_t len, uint32_t flags);

/* ---- Scoring -------------------------------------------------------------------------------- */

/* Scores a token sequence: for each position, how likely the model finds the token that follows.
 * [ptr, ptr + 4*n_tokens) holds n_tokens ids, u32 little-endian each (from `tokenize`: with BOS
 * when the tokenizer adds one; pass flags 0 there so special-token text is plain text). The
 * sequence runs from an empty KV cache; tokens[0..first_scored) are context only (one prefill),
 * then for each i in first_scored..n_tokens:
 *     TRL_RESULT_SCORE_LOGPROBS  ln P(tokens[i] | tokens[0..i])       f32, n_tokens - first_scored of them
 *     TRL_RESULT_SCORE_ARGMAX    the most likely token after tokens[0..i], for i = first_scored - 1
 *                                ..= n_tokens - 1                    u32, n_tokens - first_scored + 1
 *   (the last argmax is the prediction after the whole sequence: the first token greedy decoding
 *   would generate from it). first_scored 1 scores every token after the first.
 * Arithmetic, per position, over its vocab_size logits x (f32):
 *     argmax  the largest x, lowest id on ties (greedy decoding's choice); m = x[argmax]
 *     s       = sum over ids in order of exp(f64(x_j) - f64(m)), in f64 (every term <= 1; s >= 1)
 *     logprob = (f64(x_t) - f64(m)) - ln(s), rounded once to f32 (<= 0; 0 only when s == 1)
 *   exp and ln are fdlibm's algorithms (the Rust `libm` crate), so every host gets the same bits.
 * Perplexity (computed by the host): exp(mean(-logprob)) over the scored tokens, the mean summed in
 * f64 from 0 in token order, exp as fdlibm's (Rust `libm::exp`; JS Math.exp in V8 is the same
 * port): `trl perplexity` and the JS wrapper's score() agree to the bit.
 * Longer texts: at most context_len tokens per call (CONTEXT_FULL beyond). Score a long text in
 * windows of context_len tokens starting every stride = context_len / 2 tokens; window k >= 1
 * covers [k*stride, min(k*stride + context_len, n)) and passes first_scored = (previous window's
 * end) - k*stride, so every token after the first is scored exactly once, with at least
 * context_len - stride tokens of context (later windows start mid-text, without BOS).
 * Session: the conversation is forgotten (as by `reset`) before scoring and again after: on
 * success the KV cache is empty and the generation IDLE. Sampling, stop strings, TOKENIZED and
 * LOGITS are not touched. The scores stay readable until the next successful score_tokens or
 * unload_model (0 bytes before the first). On failure nothing changed, the previous scores included.
 * Speed: each scored token is one forward pass (like a decode step), the context-only prefix one
 * batched prefill.
 * Errors: WRONG_STATE (no model), OUT_OF_BOUNDS ((ptr, 4*n_tokens) not in one host buffer, or
 * 4*n_tokens overflows), INVALID_ARGUMENT (n_tokens 0; an id >= vocab_size: last_error names
 * tokens[i] and the id; first_scored outside 1..=n_tokens; flags not 0), CONTEXT_FULL (n_tokens >
 * context_len), OUT_OF_MEMORY. */
trl_status score_tokens(trl_ptr ptr, uint32_t n_tokens, uint32_t first_scored, uint32_t flags);

/* ---- Adapters ------------------------------------------------------------------------------- */

/* An adapter (ADP1 dense, ASP1 sparse, ALR1 low-rank; FORMAT.md "Adapters") changes the loaded
 * model's weights in place. It names the identity of the parent it was made for; any other model
 * refuses it with ADAPTER_PARENT_MISMATCH before a weight is touched. Applied adapters stack; each
 * keeps an undo log (the bytes it replaced), so removal restores the previous weights bit for bit.
 * Quantized targets: each touched block is dequantized, updated in f64, rounded to f32 and
 * requantized with ggml's reference quantizer (deterministic; FORMAT.md gives the arithmetic).
 *
 * The adapter bytes stay the host's: (ptr, len) must lie inside one live buffer from `alloc` and
 * are only read during the call (the host may dealloc them afterwards). len 0 reads nothing and is
 * ADAPTER_TRUNCATED. diagnostics report adapters_applied and the chained assembly_state_crc. */

/* Checks the adapter in [ptr, ptr+len) against the loaded model exactly as apply_adapter_delta
 * would (bytes, parent identity, targets, and that every updated weight would be finite) and
 * changes nothing — not the weights, not the KV cache or the generation.
 * Errors: WRONG_STATE (no model), OUT_OF_BOUNDS, LIMIT_EXCEEDED (64 already applied), the adapter
 * statuses 64..77 (last_error names the field, e.g. header.parent_tensor_layout_crc or
 * target[blk.0.attn_q.weight].rank), OUT_OF_MEMORY. */
trl_status validate_adapter_delta(trl_ptr ptr, uint32_t len);

/* Validates, then applies the adapter on top of those already applied. On success the KV cache
 * and the generation are reset (as by `reset`: the cache was computed with the old weights) and
 * adapters_applied / assembly_state_crc advance. On any error nothing changed: weights, KV cache,
 * generation and assembly state are as before. Errors: as validate_adapter_delta. */
trl_status apply_adapter_delta(trl_ptr ptr, uint32_t len);

/* Removes the most recently applied adapter: the weights become bit for bit what they were before
 * it, the assembly state returns to its previous value, and the KV cache and generation are reset.
 * Errors: WRONG_STATE (no model, or no adapter applied). */
trl_status remove_last_adapter(void);

/* Removes every applied adapter (newest first): the base weights again, assembly state = CRC32 of
 * the identity, KV cache and generation reset. With none applied it succeeds and changes nothing.
 * Errors: WRONG_STATE (no model). */
trl_status reset_adapters(void);

/* ---- Results -------------------------------------------------------------------------------- */

#define TRL_RESULT_TEXT          0u /* unread output text; UTF-8, whole characters; reading consumes it */
#define TRL_RESULT_TOKENS        1u /* generated ids of the current generation, u32 each */
#define TRL_RESULT_PROMPT_TOKENS 2u /* prompt ids of the current generation, u32 each */
#define TRL_RESULT_STATE         3u /* 16 bytes: state, stop_reason, n_prompt, n_generated (u32 each) */
#define TRL_RESULT_TOKENIZED     4u /* ids from the last `tokenize`, u32 each */
#define TRL_RESULT_LOGITS        5u /* vocab_size f32: the logits that chose the last generated token
                                       (before sampling changed them), or the prompt's last logits;
                                       vocab_size zeros before the first generate_start after
                                       load_model; reset and adapter calls keep them */
#define TRL_RESULT_EVAL_SIDECAR  6u /* sidecar JSON of the last successful run_eval (whole value);
                                       0 bytes (OK) before any; kept across unload/load_model */
#define TRL_RESULT_CHAT_PROMPT   7u /* UTF-8 text of the last successful render_chat (whole value);
                                       0 bytes (OK) before any since load_model */
#define TRL_RESULT_SCORE_LOGPROBS 8u /* f32 per scored token of the last successful score_tokens:
                                       ln P(token | the tokens before it); 0 bytes before any */
#define TRL_RESULT_SCORE_ARGMAX  9u /* u32 per scored position of the last successful score_tokens
                                       (one more than SCORE_LOGPROBS); 0 bytes before any */
#define TRL_RESULT_GRAMMAR_STATS 10u /* 36 bytes, of the current generation: u32 constrained (0/1),
                                       u32 masked_steps, u32 mask_cache_hits, u32 mask_cache_entries,
                                       f32 mask_ms (deciding and applying what is allowed), u32 trie_nodes,
                                       f32 trie_build_ms, u32 grammar_rules, u32 whole_mask_steps
                                       (masked steps that needed the whole-vocabulary mask; the others
                                       were decided by testing the best tokens one by one) */
#define TRL_RESULT_GRAMMAR       11u /* GBNF text of the grammar set_grammar set (for a JSON Schema the
                                       grammar it compiled to); 0 bytes when none */
#define TRL_RESULT_LOAD_PROGRESS 12u /* 24 bytes: total, received, verified (u64 each) of the current
                                       or last load (load_model or a stream); no model needed */
#define TRL_RESULT_SESSION       13u /* the SES1 snapshot of the last successful save_session (whole
                                       value, FORMAT.md "Session snapshots"); 0 bytes before any since
                                       load_model; kept until the next save_session or unload_model */

#define TRL_STATE_IDLE     0u
#define TRL_STATE_RUNNING  1u
#define TRL_STATE_FINISHED 2u

#define TRL_STOP_NONE              0u
#define TRL_STOP_END_OF_GENERATION 1u
#define TRL_STOP_MAX_TOKENS        2u
#define TRL_STOP_STOP_STRING       3u
#define TRL_STOP_CONTEXT_FULL      4u
#define TRL_STOP_GRAMMAR_COMPLETE  5u /* the output is a complete sentence and no token can extend it */
#define TRL_STOP_GRAMMAR_INCOMPLETE 6u /* max_new_tokens (or every token) ran out before the output was complete */

/* Copies a result to [dst_ptr, dst_ptr+dst_cap) and stores the byte count at len_out_ptr (4 bytes).
 * TEXT: writes as many unread bytes as fit, cut on a character boundary, and consumes them
 *   (OK with 0 bytes = nothing new). When there is unread text but dst_cap is smaller than its next
 *   character: BUFFER_TOO_SMALL with that character's length (1..=4) at len_out_ptr and nothing
 *   consumed — so a dst_cap of at least 4 always makes progress. The text is always valid UTF-8:
 *   bytes from byte tokens that do not form UTF-8 come out as U+FFFD (EF BF BD), one per maximal
 *   ill-formed subsequence as in Unicode §3.9 (what `String::from_utf8_lossy` and a
 *   non-fatal JS TextDecoder produce), once later tokens can no longer complete them.
 *   Other kinds: the whole value must fit, else BUFFER_TOO_SMALL with the needed size at
 *   len_out_ptr and nothing else written.
 * Errors: WRONG_STATE (no model), INVALID_ARGUMENT (kind; len_out_ptr overlapping the
 * destination), OUT_OF_BOUNDS, BUFFER_TOO_SMALL. */
trl_status read_result(uint32_t kind, trl_ptr dst_ptr, uint32_t dst_cap, trl_ptr len_out_ptr);

/* ---- Evals --------------------------------------------------------------------------------- */

/* Runs the eval case file at [ptr, ptr+len) (JSONL; FORMAT.md "Eval cases and sidecars") against the
 * loaded model and its applied adapters: every case greedily, with only its own stop strings, from an
 * empty conversation; chat cases are wrapped in ChatML with the suite's system prompt. The sidecar
 * JSON is then read with TRL_RESULT_EVAL_SIDECAR. flags must be 0. The file is parsed and checked
 * before anything runs, so a malformed file changes nothing; after cases have run, the conversation
 * is forgotten (as by reset) while sampling settings and stop strings are restored. The host keeps
 * its buffer.
 * Errors: WRONG_STATE (no model), INVALID_ARGUMENT (flags), OUT_OF_BOUNDS, OUT_OF_MEMORY,
 * EVAL_* (80..=88), CONTEXT_FULL (a case's prompt does not fit). */
trl_status run_eval(trl_ptr ptr, uint32_t len, uint32_t flags);

/* ---- Diagnostics ---------------------------------------------------------------------------- */

/* Writes the 128-byte diagnostics record (layout version 1) to dst_ptr; works with no model loaded
 * (model_loaded = 0). Errors: BUFFER_TOO_SMALL (dst_cap < 128), OUT_OF_BOUNDS.
 *
 *  off type field                      off type field
 *    0 u32  layout_version (1)          56 u64  package_bytes
 *    4 u32  layout_len (128)            64 u64  kv_cache_bytes
 *    8 u32  model_loaded (0/1)          72 u64  n_params
 *   12 u32  quant_mode (dtype code,     80 u32  tensor_layout_crc
 *           0xFFFFFFFF = no model)      84 u32  tokenizer_crc
 *   16 u32  prompt_tokens               88 u64  linear_memory_bytes
 *   20 u32  generated_tokens            96 f32  prefill_ms
 *   24 f32  prefill_tokens_per_s       100 f32  decode_ms
 *   28 f32  decode_tokens_per_s        104 u32  kv_dtype (0 = f32, 1 = f16)
 *   32 u64  peak_scratch_bytes         108 u32  chat_template (0 none, 1 ChatML,
 *           (activations + KV cache)            2 ChatML Qwen, 3 Gemma)
 *                                      112 u64  total_generated_tokens (since load)
 *   40 u32  kv_len                     120 u32  unencodable_bytes: input bytes of
 *                                           the last tokenize / generate_start
 *                                           text no token covers (dropped, or
 *                                           the unknown token; TOKENIZER.md)
 *                                      124 u32  threads: 1 + workers inside
 *                                           worker_run (threaded flavour;
 *                                           1 otherwise; THREADS.md)
 *   44 u32  context_len
 *   48 u32  adapters_applied
 *   52 u32  assembly_state_crc: state_0 = CRC32 of the 24-byte model identity (n_params u64,
 *           tensor_layout_crc, tokenizer_crc, flags, n_tensors; see FORMAT.md); after each applied
 *           adapter state_k = CRC32(u32le(state_{k-1}) ++ u32le(adapter's artifact CRC32))
 */
trl_status read_diagnostics(trl_ptr dst_ptr, uint32_t dst_cap);

/* Copies the message of the most recent failed call (UTF-8, no terminator) — at most dst_cap bytes
 * — and stores its full length at len_out_ptr. A successful call does not clear it. Messages are
 * `STATUS_NAME: field = value: rule`, at most TRL_MAX_ERROR_LEN bytes (a longer field name is cut at
 * a character boundary and ends in "…"); recording one never allocates, so OUT_OF_MEMORY is always
 * reported. A buffer of TRL_MAX_ERROR_LEN bytes always holds the whole message. The value is a
 * decimal number, except for a matrix shape, written `[rows, cols]` (e.g. ADAPTER_SHAPE_MISMATCH:
 * `target[blk.0.attn_q.weight].shape = [64, 32]: ...`).
 * Errors: OUT_OF_BOUNDS, INVALID_ARGUMENT (len_out_ptr overlapping the destination). */
#define TRL_MAX_ERROR_LEN 384u
trl_status last_error(trl_ptr dst_ptr, uint32_t dst_cap, trl_ptr len_out_ptr);

/* ---- Threads (the threaded flavour only; THREADS.md) ------------------------------------------ */

/* The threaded flavour imports its memory (`env.memory`, shared, the module's own minimum and a
 * maximum of 65536 pages) instead of exporting `memory`, and exports the three calls below and the
 * mutable i32 global `__stack_pointer`. A host instantiates the module once more per worker on the
 * same memory, points the worker instance's `__stack_pointer` at worker_stack_top(i) (asked of
 * the leader) and calls worker_run(i) there. Every other export is called on the leader only.
 * Results are bit-identical for any number of workers, none included. */
#define TRL_MAX_WORKERS 63u

/* The top of worker `worker`'s stack (256 KiB from the module's heap, allocated on the first call
 * for that index, the same address after). Returns 0 on failure: last_error says why
 * (INVALID_ARGUMENT: worker >= TRL_MAX_WORKERS; OUT_OF_MEMORY: no room for the stack). */
trl_ptr worker_stack_top(uint32_t worker);

/* Called on a worker instance, whose `__stack_pointer` is worker_stack_top(worker): takes part in
 * the leader's matrix products, sleeping in memory.atomic.wait32 when idle (so it must run where
 * waiting is allowed: a Web Worker, not a browser's main thread). Returns TRL_STATUS_OK after
 * stop_workers. Errors (returned at once, without waiting): INVALID_ARGUMENT (worker >=
 * TRL_MAX_WORKERS), WRONG_STATE (no stack for that index, or a worker_run for it is running). Does
 * not set last_error (the leader's). */
trl_status worker_run(uint32_t worker);

/* Makes every running worker_run return (stacks are kept: worker_run may be called again). Never
 * fails. Generation keeps working with the leader alone, with the same bits. */
trl_status stop_workers(void);

#ifdef __cplusplus
}
#endif

#endif /* TINYRUSTLM_H */
