//! The runtime's state machine behind the ABI: one loaded model, sampling settings, stop strings and
//! an incremental generation session. Safe Rust throughout; `abi.rs` only moves bytes in and out.
//!
//! Every method validates before it mutates, so a call that returns an error leaves the engine as it
//! was (the ABI header promises this and the conformance suite checks it).

use alloc::rc::Rc;
use alloc::vec::Vec;

use crate::adapter::AdapterStack;
use crate::buffer::AlignedBytes;
use crate::diag::Diagnostics;
use crate::error::{oom, Error, Result, Status};
use crate::format::{LoadProgress, ModelIdentity};
use crate::grammar::matcher::Matcher;
use crate::grammar::trie::{MaskCache, VocabTrie};
use crate::grammar::Grammar;
use crate::load_stream::{LoadStream, VerifiedPackage};
use crate::model::{self, Model};
use crate::quant::DType;
use crate::sampler::{Sampler, SamplingParams};
use crate::tokenizer::chat;
use crate::tokenizer::{StreamDecoder, Tokenizer};

// Flags, result kinds, generation states and stop reasons are ABI facts (`crate::abi_facts`).
pub use crate::abi_facts::{GenState, ResultKind, StopReason, GEN_CONTINUE, GEN_IGNORE_EOG, GEN_PARSE_SPECIAL, LOAD_KV_F16};
use crate::abi_facts::{
    CHAT_ADD_GENERATION_PROMPT, CHAT_CONTINUE, CHAT_KNOWN, CHAT_NO_DEFAULT_SYSTEM, GEN_KNOWN, GRAMMAR_JSON_SCHEMA, GRAMMAR_KNOWN, LOAD_KNOWN, TOKENIZE_KNOWN,
};

/// Stop strings: few and short, because every generated token is checked against all of them.
pub const MAX_STOP_STRINGS: usize = 8;
pub const MAX_STOP_STRING_LEN: usize = 64;

/// One generation: prompt, output so far, and the text the host has not read yet.
struct Session {
    state: GenState,
    stop_reason: StopReason,
    prompt_tokens: Vec<u32>,
    generated: Vec<u32>,
    max_new_tokens: u32,
    ignore_eog: bool,
    /// Sampled but not yet run through the model (it is run when generation continues).
    unfed: Option<u32>,
    decoder: StreamDecoder,
    /// Decoded output; `[..released]` may be read, the rest could still turn into a stop string.
    text: Vec<u8>,
    released: usize,
    read: usize,
    prefill_ms: f64,
    decode_ms: f64,
    /// The grammar's position when the generation is constrained.
    matcher: Option<Matcher>,
    /// Time spent computing and applying token masks, and how many steps were masked.
    mask_ms: f64,
    masked_steps: u32,
    /// Masked steps that needed the whole-vocabulary mask (the others decided from leading tokens).
    whole_mask_steps: u32,
    /// The mask cache's hit count when the generation started.
    cache_hits_at_start: u64,
}

impl Session {
    fn idle() -> Session {
        Session {
            state: GenState::Idle,
            stop_reason: StopReason::None,
            prompt_tokens: Vec::new(),
            generated: Vec::new(),
            max_new_tokens: 0,
            ignore_eog: false,
            unfed: None,
            decoder: StreamDecoder::new(),
            text: Vec::new(),
            released: 0,
            read: 0,
            prefill_ms: 0.0,
            decode_ms: 0.0,
            matcher: None,
            mask_ms: 0.0,
            masked_steps: 0,
            whole_mask_steps: 0,
            cache_hits_at_start: 0,
        }
    }
}

struct Loaded {
    model: Model,
    tokenizer: Tokenizer,
    sampler: Sampler,
    /// Every token in the KV cache, in order (the repetition-penalty window reads its tail).
    context_tokens: Vec<u32>,
    /// Logits handed to the sampler (which may rewrite them); kept for `ResultKind::Logits`.
    work_logits: Vec<f32>,
    session: Session,
    tokenized: Vec<u32>,
    /// The last `render_chat` text (`ResultKind::ChatPrompt`).
    chat_prompt: Vec<u8>,
    /// The last `score_tokens` results (`ResultKind::ScoreLogprobs`, `ResultKind::ScoreArgmax`).
    score: Scores,
    total_generated: u64,
    /// `unencodable_bytes` of the last text tokenized (`tokenize` or a prompt).
    unencodable_bytes: u32,
    assembly_state_crc: u32,
    /// Applied adapters with their undo logs; `assembly_state_crc` stays the parent's (state 0).
    adapters: AdapterStack,
    /// The vocabulary's byte trie, built by the first constrained generation, and its build time.
    vocab_trie: Option<VocabTrie>,
    trie_build_ms: f64,
    /// Token masks of the current grammar by matcher state, and a constrained step's scratch.
    mask_cache: MaskCache,
    constrain_scratch: constrain::Scratch,
    /// The last `save_session` snapshot (`ResultKind::Session`), kept until the next one or unload.
    snapshot: Vec<u8>,
}

/// What `score_tokens` computed: `logprobs[j]` is ln P(token `first_scored + j`) and `argmax[j]` the
/// most likely token after tokens `0..first_scored + j` (one more entry than `logprobs`).
#[derive(Debug, Default, PartialEq)]
pub struct Scores {
    pub logprobs: Vec<f32>,
    pub argmax: Vec<u32>,
}

/// What the host configures between generations: sampling parameters and stop strings. Taken out
/// and put back whole ([`Engine::replace_settings`]), so work that needs its own settings for a while
/// (an eval run) restores the host's exactly, without copying them.
#[derive(Debug, Default, PartialEq)]
pub struct Settings {
    sampling: SamplingParams,
    stop_strings: Vec<Vec<u8>>,
    /// The grammar every generation is constrained by, with a serial number naming it (its masks
    /// are cached under that number).
    grammar: Option<(u64, Rc<Grammar>)>,
}

impl Settings {
    pub fn sampling(&self) -> &SamplingParams {
        &self.sampling
    }

    pub fn stop_strings(&self) -> impl Iterator<Item = &[u8]> {
        self.stop_strings.iter().map(Vec::as_slice)
    }
}

/// Which weights answer: the package's identity and checksums and the adapters applied on top, so
/// a result (an eval sidecar, a host's log) can be traced to the exact weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub model: ModelIdentity,
    pub artifact_crc: u32,
    pub quant: DType,
    /// Digests of the applied adapters, oldest first.
    pub adapter_digests: Vec<u32>,
    /// The assembly state after those adapters (diagnostics' `assembly_state_crc`).
    pub assembly_state_crc: u32,
}

pub struct Engine {
    loaded: Option<Loaded>,
    settings: Settings,
    /// Milliseconds from a monotonic clock (the host's, on wasm).
    clock: fn() -> f64,
    /// Sidecar of the last successful eval run (`ResultKind::EvalSidecar`), opaque here: written by
    /// `crate::eval`, which drives the engine through this public API.
    eval_sidecar: Vec<u8>,
    /// Serial number of the last grammar set.
    grammar_serial: u64,
    /// A streaming load between `load_begin` and `load_finish`.
    stream: Option<LoadStream>,
    /// Where the current or last load stands (`ResultKind::LoadProgress`).
    load_progress: LoadProgress,
}

fn wrong_state(field: &'static str, rule: &'static str) -> Error {
    Error::new(Status::WrongState, field, 0, rule)
}

fn invalid(field: &'static str, value: u64, rule: &'static str) -> Error {
    Error::new(Status::InvalidArgument, field, value, rule)
}

fn push_token(v: &mut Vec<u32>, t: u32, field: &'static str) -> Result<()> {
    v.try_reserve(1).map_err(|_| oom(field, (v.len() + 1) * 4))?;
    v.push(t);
    Ok(())
}

impl Engine {
    pub fn new(clock: fn() -> f64) -> Engine {
        Engine {
            loaded: None,
            settings: Settings::default(),
            clock,
            eval_sidecar: Vec::new(),
            grammar_serial: 0,
            stream: None,
            load_progress: LoadProgress::default(),
        }
    }

    fn loaded(&self) -> Result<&Loaded> {
        self.loaded.as_ref().ok_or_else(|| wrong_state("model", "no model is loaded"))
    }

    fn loaded_mut(&mut self) -> Result<&mut Loaded> {
        self.loaded.as_mut().ok_or_else(|| wrong_state("model", "no model is loaded"))
    }

    /// Validates `bytes` as an SLM1 package and takes them as the model: the verifier a streaming
    /// load ([`Engine::load_begin`]) runs, fed every byte at once. On error the bytes are handed
    /// back so the host keeps what it passed in.
    pub fn load(&mut self, bytes: AlignedBytes, context_len: u32, flags: u32) -> core::result::Result<(), (Error, AlignedBytes)> {
        if let Err(e) = self.check_load_call(flags) {
            return Err((e, bytes));
        }
        let (verified, progress) = crate::load_stream::verify_whole(bytes, context_len, flags);
        self.load_progress = progress;
        let verified = verified?;
        self.install(verified)
    }

    fn check_load_call(&self, flags: u32) -> Result<()> {
        if self.loaded.is_some() {
            return Err(wrong_state("model", "a model is already loaded; unload it first"));
        }
        if self.stream.is_some() {
            return Err(wrong_state("load", "a streaming load is in progress; finish or abort it first"));
        }
        if flags & !LOAD_KNOWN != 0 {
            return Err(invalid("flags", flags as u64, "only KV_F16 (1) is defined"));
        }
        Ok(())
    }

    /// Starts a streaming load of a package of `total_len` bytes: the memory it will live in is
    /// allocated now, and [`Engine::load_append`] fills and checks it chunk by chunk.
    pub fn load_begin(&mut self, total_len: u32, context_len: u32, flags: u32) -> Result<()> {
        self.check_load_call(flags)?;
        self.load_progress = LoadProgress { total: total_len as u64, ..LoadProgress::default() };
        let stream = LoadStream::begin(total_len, context_len, flags)?;
        self.load_progress = stream.progress();
        self.stream = Some(stream);
        Ok(())
    }

    /// Appends a chunk to the streaming load and runs every check it completes. On error the stream
    /// ends and its memory is freed (the progress keeps where it failed).
    pub fn load_append(&mut self, chunk: &[u8]) -> Result<()> {
        let stream = self.stream.as_mut().ok_or_else(|| wrong_state("load", "no streaming load is in progress (load_begin first)"))?;
        let r = stream.append(chunk);
        self.load_progress = stream.progress();
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    /// Ends the streaming load: the model is taken when every announced byte arrived and passed.
    /// Either way the stream is over.
    pub fn load_finish(&mut self) -> Result<()> {
        let stream = self.stream.take().ok_or_else(|| wrong_state("load", "no streaming load is in progress (load_begin first)"))?;
        let verified = stream.finish()?;
        self.install(verified).map_err(|(e, _)| e)
    }

    /// Drops the streaming load and its memory.
    pub fn load_abort(&mut self) -> Result<()> {
        self.stream.take().ok_or_else(|| wrong_state("load", "no streaming load is in progress"))?;
        Ok(())
    }

    /// Where the current (or last) load stands.
    pub fn load_progress(&self) -> LoadProgress {
        self.load_progress
    }

    /// Takes a verified package as the model, with the scratch it needs.
    fn install(&mut self, verified: VerifiedPackage) -> core::result::Result<(), (Error, AlignedBytes)> {
        let VerifiedPackage { bytes, package, tokenizer, context_len, flags } = verified;
        let p = package.hparams;
        let identity = package.identity;
        let vocab = p.vocab_size as usize;
        let mut work_logits = Vec::new();
        let mut context_tokens = Vec::new();
        let reserve_ctx = if context_len == 0 { p.max_context.min(model::DEFAULT_CONTEXT) } else { context_len } as usize;
        if work_logits.try_reserve_exact(vocab).is_err() || context_tokens.try_reserve_exact(reserve_ctx).is_err() {
            return Err((oom("scratch", vocab * 4), bytes));
        }
        work_logits.resize(vocab, 0.0);
        let sampler = match Sampler::try_new(self.settings.sampling, vocab) {
            Ok(s) => s,
            // Candidates (id + value, 8 bytes) and a penalty flag per token.
            Err(_) => return Err((oom("sampler", vocab * 9), bytes)),
        };
        let kv_dtype = if flags & LOAD_KV_F16 != 0 { model::KvDtype::F16 } else { model::KvDtype::F32 };
        let model = Model::new(bytes, package, context_len, kv_dtype)?;
        self.loaded = Some(Loaded {
            model,
            tokenizer,
            sampler,
            context_tokens,
            work_logits,
            session: Session::idle(),
            tokenized: Vec::new(),
            chat_prompt: Vec::new(),
            score: Scores::default(),
            total_generated: 0,
            unencodable_bytes: 0,
            assembly_state_crc: crc32fast::hash(&identity.to_bytes()),
            adapters: AdapterStack::new(),
            vocab_trie: None,
            trie_build_ms: 0.0,
            mask_cache: MaskCache::default(),
            constrain_scratch: constrain::Scratch::default(),
            snapshot: Vec::new(),
        });
        Ok(())
    }

    /// Drops the model and everything derived from it.
    pub fn unload(&mut self) -> Result<()> {
        self.loaded()?;
        self.loaded = None;
        Ok(())
    }

    pub fn set_sampling(&mut self, params: SamplingParams) -> Result<()> {
        params.validate()?;
        self.settings.sampling = params;
        Ok(())
    }

    pub fn add_stop_string(&mut self, s: &[u8]) -> Result<()> {
        let stops = &mut self.settings.stop_strings;
        if s.is_empty() || s.len() > MAX_STOP_STRING_LEN {
            return Err(invalid("stop_string.len", s.len() as u64, "must be in 1..=64 bytes"));
        }
        if stops.len() >= MAX_STOP_STRINGS {
            return Err(Error::new(Status::LimitExceeded, "stop_strings", stops.len() as u64, "at most 8 stop strings"));
        }
        stops.try_reserve(1).map_err(|_| oom("stop_strings", core::mem::size_of::<Vec<u8>>()))?;
        let mut owned = Vec::new();
        owned.try_reserve_exact(s.len()).map_err(|_| oom("stop_string", s.len()))?;
        owned.extend_from_slice(s);
        stops.push(owned);
        Ok(())
    }

    pub fn clear_stop_strings(&mut self) {
        self.settings.stop_strings.clear();
    }

    /// Compiles a grammar (GBNF, or with `GRAMMAR_JSON_SCHEMA` a JSON Schema) that every following
    /// generation is constrained by, replacing the previous one. Needs no model; a generation
    /// already running keeps the grammar it started with.
    pub fn set_grammar(&mut self, source: &[u8], flags: u32) -> Result<()> {
        if flags & !GRAMMAR_KNOWN != 0 {
            return Err(invalid("flags", flags as u64, "only JSON_SCHEMA (1) is defined"));
        }
        if source.is_empty() {
            return Err(invalid("grammar.len", 0, "the grammar or schema text is empty"));
        }
        let grammar = crate::grammar::compile(source, flags & GRAMMAR_JSON_SCHEMA != 0)?;
        self.grammar_serial += 1;
        self.settings.grammar = Some((self.grammar_serial, Rc::new(grammar)));
        Ok(())
    }

    /// Generations from now on are unconstrained.
    pub fn clear_grammar(&mut self) {
        self.settings.grammar = None;
    }

    /// The sampling parameters and stop strings the next generation will use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Puts `settings` in place and hands back the ones they replace (nothing is copied, so saving
    /// and restoring cannot fail). The running generation, if any, keeps its sampler parameters
    /// until the next `start`; its stop strings change at once.
    pub fn replace_settings(&mut self, settings: Settings) -> Settings {
        core::mem::replace(&mut self.settings, settings)
    }

    /// Tokenizes `text` (for inspection; the result is read as `ResultKind::Tokenized`).
    pub fn tokenize(&mut self, text: &[u8], flags: u32) -> Result<()> {
        if flags & !TOKENIZE_KNOWN != 0 {
            return Err(invalid("flags", flags as u64, "only PARSE_SPECIAL (1) is allowed"));
        }
        let l = self.loaded_mut()?;
        let mut out = Vec::new();
        let encoded = l.tokenizer.encode(text, flags & GEN_PARSE_SPECIAL != 0, &mut out)?;
        l.tokenized = out;
        l.unencodable_bytes = encoded.unencodable_bytes.min(u32::MAX as usize) as u32;
        Ok(())
    }

    /// Renders a conversation (the message list `render_chat` takes, see
    /// [`chat::decode_messages`]) with the loaded package's chat template, for
    /// `ResultKind::ChatPrompt`. Without `CHAT_CONTINUE` or `CHAT_NO_DEFAULT_SYSTEM`, the template's
    /// default system prompt goes first when the first message is not a system message.
    pub fn render_chat(&mut self, encoded: &[u8], flags: u32) -> Result<()> {
        if flags & !CHAT_KNOWN != 0 {
            return Err(invalid("flags", flags as u64, "only ADD_GENERATION_PROMPT (1), CONTINUE (2) and NO_DEFAULT_SYSTEM (4) are defined"));
        }
        let l = self.loaded_mut()?;
        let messages = chat::decode_messages(encoded)?;
        let template = l.tokenizer.chat_template();
        let default_system = if flags & (CHAT_CONTINUE | CHAT_NO_DEFAULT_SYSTEM) != 0 { None } else { template.default_system() };
        l.chat_prompt = chat::render(template, &messages, default_system, flags & (CHAT_ADD_GENERATION_PROMPT | CHAT_CONTINUE))?;
        Ok(())
    }

    /// Scores `tokens` from an empty KV cache: for each `i` in `first_scored..n`, ln P(tokens[i] |
    /// tokens[..i]) ([`crate::score::log_prob_and_argmax`]), and the argmax after every prefix from
    /// `tokens[..first_scored]` to the whole sequence. Tokens before `first_scored` run as one
    /// prefill (they are context only); the rest one at a time, since each position's logits are
    /// needed. The conversation is forgotten, as by [`Engine::reset`], before and after: the KV cache
    /// ends empty and the session IDLE (sampling, stop strings and `ResultKind::Logits` are kept).
    pub fn score(&mut self, tokens: &[u32], first_scored: u32, flags: u32) -> Result<()> {
        if flags != 0 {
            return Err(invalid("flags", flags as u64, "no score flags are defined; must be 0"));
        }
        let l = self.loaded_mut()?;
        let n = tokens.len();
        if n == 0 {
            return Err(invalid("n_tokens", 0, "at least one token is needed"));
        }
        if n > l.model.context_len() {
            return Err(Error::new(Status::ContextFull, "n_tokens", n as u64, "more tokens than the context holds (score longer texts in windows)"));
        }
        let vocab = l.model.package().hparams.vocab_size;
        if let Some((i, &bad)) = tokens.iter().enumerate().find(|(_, &t)| t >= vocab) {
            return Err(Error::new(Status::InvalidArgument, crate::field!("tokens[{i}]"), bad as u64, "token id must be below vocab_size"));
        }
        let first = first_scored as usize;
        if first == 0 || first > n {
            return Err(invalid("first_scored", first_scored as u64, "must be in 1..=n_tokens"));
        }
        let mut scores = Scores::default();
        scores.logprobs.try_reserve_exact(n - first).map_err(|_| oom("score.logprobs", (n - first) * 4))?;
        scores.argmax.try_reserve_exact(n - first + 1).map_err(|_| oom("score.argmax", (n - first + 1) * 4))?;

        // Commit. Model::forward fails only on ids and lengths checked above.
        l.model.reset();
        l.context_tokens.clear();
        l.session = Session::idle();
        let mut run = |l: &mut Loaded| -> Result<()> {
            l.model.forward(&tokens[..first])?;
            for &next in &tokens[first..] {
                let (lp, best) = crate::score::log_prob_and_argmax(l.model.logits(), next);
                scores.logprobs.push(lp);
                scores.argmax.push(best);
                l.model.forward(&[next])?;
            }
            scores.argmax.push(crate::sampler::argmax(l.model.logits()));
            Ok(())
        };
        let r = run(l);
        l.model.reset();
        r?;
        l.score = scores;
        Ok(())
    }

    /// Forgets the conversation: empties the KV cache and the session.
    pub fn reset(&mut self) -> Result<()> {
        let l = self.loaded_mut()?;
        l.model.reset();
        l.context_tokens.clear();
        l.session = Session::idle();
        Ok(())
    }

    /// What a snapshot of this engine's conversation is bound to (`crate::session::Binding`).
    fn session_binding(l: &Loaded) -> crate::session::Binding {
        let p = l.model.package();
        crate::session::Binding {
            identity: p.identity,
            artifact_crc: p.artifact_crc,
            n_adapters: l.adapters.len() as u32,
            assembly_state_crc: l.adapters.state_crc(l.assembly_state_crc),
            kv_dtype: l.model.kv_dtype() as u32,
            vocab_size: p.hparams.vocab_size,
            n_layers: p.hparams.n_layers,
            kv_dim: p.hparams.kv_dim() as u32,
        }
    }

    /// Saves the conversation as an SES1 snapshot (`abi/FORMAT.md` "Session snapshots") for
    /// `ResultKind::Session`: the token history, the last logits, the sampled token not yet run, the
    /// sampler's parameters and random stream, and the used part of the KV cache. A running
    /// generation may be saved; its own state (output text, stop strings, grammar position) is not
    /// part of the conversation and is not saved. Changes nothing but the result.
    pub fn save_session(&mut self) -> Result<()> {
        let l = self.loaded_mut()?;
        let n_past = l.model.kv_len();
        if n_past == 0 {
            return Err(wrong_state("kv_len", "there is no conversation to save (generate first)"));
        }
        let p = l.model.package().hparams;
        let context_len = l.model.context_len();
        let elem = if l.model.kv_dtype() == model::KvDtype::F16 { 2 } else { 4 };
        let total = model::kv_snapshot_len(&p, context_len, n_past, elem)
            .and_then(|kv| (crate::session::HEADER_LEN + crate::session::TRAILER_LEN + 4 * n_past + 4 * p.vocab_size as usize).checked_add(kv))
            .ok_or_else(|| oom("snapshot", usize::MAX))?;
        let mut out = Vec::new();
        out.try_reserve_exact(total).map_err(|_| oom("snapshot", total))?;
        let conversation = crate::session::Conversation {
            context_len: context_len as u32,
            n_past: n_past as u32,
            pending_token: l.session.unfed,
            sampling: *l.sampler.params(),
            rng_state: l.sampler.rng_state(),
        };
        out.extend_from_slice(&crate::session::encode_header(&Self::session_binding(l), &conversation, total as u64));
        l.context_tokens.iter().for_each(|t| out.extend_from_slice(&t.to_le_bytes()));
        l.model.logits().iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        l.model.write_kv_snapshot(&mut out);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), total);
        l.snapshot = out;
        Ok(())
    }

    /// Replaces the conversation with a snapshot's, after checking every byte of it against the
    /// loaded model, its adapter stack, KV dtype and context ([`crate::session::parse`]). On success
    /// the generation state is IDLE and `GEN_CONTINUE` continues the restored conversation with the
    /// tokens the saved one would have given. On failure nothing changes.
    pub fn restore_session(&mut self, bytes: &[u8]) -> Result<()> {
        let l = self.loaded_mut()?;
        let p = l.model.package().hparams;
        let elem = if l.model.kv_dtype() == model::KvDtype::F16 { 2 } else { 4 };
        let snap = crate::session::parse(bytes, &Self::session_binding(l), l.model.context_len() as u32, p.max_context, |ctx, n| {
            model::kv_snapshot_len(&p, ctx as usize, n as usize, elem)
        })?;
        let c = snap.conversation;
        let n_past = c.n_past as usize;
        let mut tokens = Vec::new();
        tokens.try_reserve_exact(n_past.max(l.context_tokens.capacity())).map_err(|_| oom("context_tokens", n_past * 4))?;
        tokens.extend(snap.tokens.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])));

        // Commit: nothing below can fail.
        l.model.restore_kv(n_past, c.context_len as usize, snap.kv, snap.logits);
        l.context_tokens = tokens;
        l.sampler.restore(c.sampling, c.rng_state);
        l.work_logits.copy_from_slice(l.model.logits());
        l.session = Session::idle();
        l.session.unfed = c.pending_token;
        Ok(())
    }

    /// Checks an adapter against the loaded model exactly as [`Engine::apply_adapter`] would, and
    /// changes nothing.
    pub fn validate_adapter(&self, bytes: &[u8]) -> Result<()> {
        let l = self.loaded()?;
        l.adapters.validate(bytes, &l.model)
    }

    /// Validates and applies an adapter (see `crate::adapter`). On success the conversation is
    /// forgotten, as by [`Engine::reset`]: the KV cache was computed with the old weights.
    pub fn apply_adapter(&mut self, bytes: &[u8]) -> Result<()> {
        let l = self.loaded_mut()?;
        l.adapters.apply(bytes, &mut l.model, l.assembly_state_crc)?;
        self.reset()
    }

    /// Restores the weights from before the newest adapter and forgets the conversation.
    pub fn remove_last_adapter(&mut self) -> Result<()> {
        let l = self.loaded_mut()?;
        l.adapters.remove_last(&mut l.model)?;
        self.reset()
    }

    /// Restores the base weights. With no adapter applied this changes nothing (the conversation
    /// is kept); otherwise the conversation is forgotten.
    pub fn reset_adapters(&mut self) -> Result<()> {
        let l = self.loaded_mut()?;
        if l.adapters.is_empty() {
            return Ok(());
        }
        l.adapters.reset(&mut l.model);
        self.reset()
    }

    /// Bytes held by the applied adapters' undo logs (what reversibility costs).
    pub fn adapter_undo_bytes(&self) -> usize {
        self.loaded.as_ref().map_or(0, |l| l.adapters.undo_bytes())
    }

    /// Tokenizes the prompt and runs it through the model (prefill). The first generated token comes
    /// from `step`. With `GEN_CONTINUE` the prompt extends the current conversation.
    pub fn start(&mut self, prompt: &[u8], max_new_tokens: u32, flags: u32) -> Result<()> {
        if flags & !GEN_KNOWN != 0 {
            return Err(invalid("flags", flags as u64, "only PARSE_SPECIAL (1), CONTINUE (2) and IGNORE_EOG (4) are defined"));
        }
        let sampling = self.settings.sampling;
        let grammar = self.settings.grammar.clone();
        let clock = self.clock;
        let l = self.loaded_mut()?;
        let continuing = flags & GEN_CONTINUE != 0;
        if continuing && l.session.state == GenState::Idle && l.model.kv_len() == 0 {
            return Err(wrong_state("flags.CONTINUE", "there is no conversation to continue"));
        }

        // Build the full token list before touching any state.
        let mut tokens = Vec::new();
        if continuing {
            if let Some(t) = l.session.unfed {
                push_token(&mut tokens, t, "prompt_tokens")?;
            }
        }
        let mut prompt_tokens = Vec::new();
        let encoded = l.tokenizer.encode(prompt, flags & GEN_PARSE_SPECIAL != 0, &mut prompt_tokens)?;
        if continuing {
            // The tokenizer adds BOS for a fresh prompt; mid-conversation it does not belong.
            if let (Some(bos), Some(&first)) = (l.tokenizer.bos_id(), prompt_tokens.first()) {
                if first == bos && l.tokenizer.adds_bos() {
                    prompt_tokens.remove(0);
                }
            }
        }
        tokens.try_reserve(prompt_tokens.len()).map_err(|_| oom("prompt_tokens", prompt_tokens.len() * 4))?;
        tokens.extend_from_slice(&prompt_tokens);
        let base = if continuing { l.model.kv_len() } else { 0 };
        if tokens.is_empty() && base == 0 {
            return Err(invalid("prompt.len", 0, "the prompt produced no tokens and there is no context to continue"));
        }
        if base + tokens.len() > l.model.context_len() {
            return Err(Error::new(Status::ContextFull, "prompt_tokens", (base + tokens.len()) as u64, "prompt does not fit in the context"));
        }
        l.context_tokens.try_reserve(base + tokens.len()).map_err(|_| oom("context_tokens", (base + tokens.len()) * 4))?;
        // A grammar needs the vocabulary's trie (built once; not state a host can see) and a mask
        // buffer; its mask cache starts over when the grammar changed.
        let matcher = match &grammar {
            Some((serial, g)) => {
                if l.vocab_trie.is_none() {
                    let t0 = clock();
                    let tok = &l.tokenizer;
                    l.vocab_trie = Some(VocabTrie::build(tok, |id| tok.is_end_of_generation(id))?);
                    l.trie_build_ms = clock() - t0;
                }
                l.constrain_scratch.reserve()?;
                if l.mask_cache.grammar_serial != *serial {
                    l.mask_cache = MaskCache::new(*serial);
                }
                Some(Matcher::new(g.clone()))
            }
            None => None,
        };

        // Commit.
        l.unencodable_bytes = encoded.unencodable_bytes.min(u32::MAX as usize) as u32;
        if !continuing {
            l.model.reset();
            l.context_tokens.clear();
            l.sampler.set_params(sampling);
        } else if l.sampler.params() != &sampling {
            l.sampler.set_params(sampling);
        }
        let t0 = clock();
        if tokens.is_empty() {
            // Continuing with nothing new: the logits of the last position are still current.
        } else {
            l.model.forward(&tokens)?;
            l.context_tokens.extend_from_slice(&tokens);
        }
        let prefill_ms = clock() - t0;
        let mut session = Session::idle();
        session.state = GenState::Running;
        session.prompt_tokens = prompt_tokens;
        session.max_new_tokens = max_new_tokens;
        session.ignore_eog = flags & GEN_IGNORE_EOG != 0;
        session.prefill_ms = prefill_ms;
        session.matcher = matcher;
        session.cache_hits_at_start = l.mask_cache.hits;
        l.session = session;
        l.work_logits.copy_from_slice(l.model.logits());
        if max_new_tokens == 0 {
            l.session.state = GenState::Finished;
            l.session.stop_reason = StopReason::MaxTokens;
        }
        Ok(())
    }

    /// Generates up to `max_steps` tokens of the running generation.
    pub fn step(&mut self, max_steps: u32) -> Result<()> {
        let clock = self.clock;
        let l = self.loaded.as_mut().ok_or_else(|| wrong_state("model", "no model is loaded"))?;
        if l.session.state != GenState::Running {
            return Err(wrong_state("generation", "no generation is running (call generate_start)"));
        }
        let stops = &self.settings.stop_strings;
        let t0 = clock();
        // What one step can append to the session text: a token's bytes, each of which may come out
        // as a 3-byte U+FFFD (plus one for bytes held from the previous token), and the U+FFFD that
        // `finish` may add.
        let text_room = 4 * (l.tokenizer.max_token_len() as usize + 4);
        for done in 0..max_steps {
            // Reserve all a step appends before anything changes, so OUT_OF_MEMORY leaves the
            // generation where it was (the KV cache, the sampler's random stream, the text) and a
            // later call, with memory freed, continues exactly as if the failed one never happened.
            // After some steps succeeded the call returns them; the next call reports the failure.
            let room = l.context_tokens.try_reserve(1).map_err(|_| oom("context_tokens", 4)).and_then(|()| {
                l.session.generated.try_reserve(1).map_err(|_| oom("generated_tokens", 4))?;
                l.session.text.try_reserve(text_room).map_err(|_| oom("text", text_room))
            });
            match room {
                Ok(()) => {}
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            }
            // Under a grammar: whether any token may come next, decided before the model runs, so
            // a sentence no token can extend ends here without a wasted forward pass.
            let mut eog_allowed = !l.session.ignore_eog;
            if let (Some(m), Some(trie)) = (l.session.matcher.as_mut(), l.vocab_trie.as_ref()) {
                let t = clock();
                let prev = l.session.unfed.or(l.context_tokens.last().copied());
                let any_allowed = constrain::Vocab { trie, tokens: &l.tokenizer, prev, eog_allowed }.any_allowed(m);
                let complete = m.is_complete();
                l.session.mask_ms += clock() - t;
                eog_allowed &= complete;
                if !any_allowed {
                    finish(l, if complete { StopReason::GrammarComplete } else { StopReason::GrammarIncomplete });
                    break;
                }
            }
            if let Some(t) = l.session.unfed {
                if l.model.kv_len() >= l.model.context_len() {
                    finish(l, StopReason::ContextFull);
                    break;
                }
                l.model.forward(&[t])?;
                l.context_tokens.push(t);
                l.session.unfed = None;
            }
            l.work_logits.copy_from_slice(l.model.logits());
            let window = l.sampler.params().repetition_window as usize;
            let recent = &l.context_tokens[l.context_tokens.len().saturating_sub(window)..];
            let mut logits = core::mem::take(&mut l.work_logits);
            let token = match (l.session.matcher.as_mut(), l.vocab_trie.as_ref()) {
                (Some(m), Some(trie)) => {
                    // Forbidden tokens get -inf, which the sampler never picks; its arithmetic on
                    // the others is unchanged. End of generation only where the sentence is complete.
                    let t = clock();
                    l.sampler.adjust(&mut logits, recent);
                    let vocab = constrain::Vocab { trie, tokens: &l.tokenizer, prev: l.context_tokens.last().copied(), eog_allowed };
                    match constrain::constrain(&mut logits, m, &vocab, &mut l.sampler, &mut l.mask_cache, &mut l.constrain_scratch) {
                        Ok(route) => l.session.whole_mask_steps += (route == constrain::Route::WholeMask) as u32,
                        Err(e) => {
                            // The token is fed and the matcher unchanged: a later call picks up here.
                            logits.copy_from_slice(l.model.logits());
                            l.work_logits = logits;
                            if done > 0 {
                                break;
                            }
                            return Err(e);
                        }
                    }
                    l.session.masked_steps += 1;
                    l.session.mask_ms += clock() - t;
                    l.sampler.choose(&logits)
                }
                _ => l.sampler.sample(&mut logits, recent),
            };
            // Keep the logits as they were before the sampler rewrote them.
            logits.copy_from_slice(l.model.logits());
            l.work_logits = logits;
            l.session.generated.push(token);
            l.session.unfed = Some(token);
            l.total_generated += 1;
            if !l.session.ignore_eog && l.tokenizer.is_end_of_generation(token) {
                finish(l, StopReason::EndOfGeneration);
                break;
            }
            let before = l.session.text.len();
            let piece = l.tokenizer.decode_piece(l.context_tokens.last().copied(), token);
            if let Some(m) = l.session.matcher.as_mut() {
                // Only allowed tokens reach here; `false` would need every allowed logit to be
                // -inf, and then the text is not passed off as a sentence.
                if !m.accept_bytes(piece) {
                    l.session.generated.pop();
                    l.session.unfed = None;
                    l.total_generated -= 1;
                    finish(l, StopReason::GrammarIncomplete);
                    break;
                }
            }
            l.session.decoder.push(piece, &mut l.session.text);
            if let Some(cut) = find_stop(&l.session.text, before, stops) {
                l.session.text.truncate(cut);
                l.session.released = l.session.released.min(cut);
                l.session.state = GenState::Finished;
                l.session.stop_reason = StopReason::StopString;
                break;
            }
            l.session.released = l.session.text.len() - held_back(&l.session.text, stops);
            if l.session.generated.len() as u64 >= l.session.max_new_tokens as u64 {
                let incomplete = l.session.matcher.as_ref().is_some_and(|m| !m.is_complete());
                finish(l, if incomplete { StopReason::GrammarIncomplete } else { StopReason::MaxTokens });
                break;
            }
        }
        l.session.decode_ms += clock() - t0;
        Ok(())
    }

    /// `start` then `step` until the generation finishes.
    pub fn generate(&mut self, prompt: &[u8], max_new_tokens: u32, flags: u32) -> Result<()> {
        self.start(prompt, max_new_tokens, flags)?;
        while self.loaded()?.session.state == GenState::Running {
            self.step(u32::MAX)?;
        }
        Ok(())
    }

    /// Copies a result into `dst`; returns the number of bytes written. For `Text`, as much unread
    /// text as fits (cut on a character boundary) is written and consumed; when unread text exists
    /// and not even its next character fits, `BufferTooSmall` with that character's length. For the
    /// other kinds the whole value must fit, else `BufferTooSmall` with the needed length.
    pub fn read(&mut self, kind: ResultKind, dst: &mut [u8]) -> core::result::Result<usize, (Error, usize)> {
        // The only kind that needs no model.
        if kind == ResultKind::LoadProgress {
            return whole_bytes(&self.load_progress.to_bytes(), dst);
        }
        let l = self.loaded.as_mut().ok_or((wrong_state("model", "no model is loaded"), 0))?;
        let s = &mut l.session;
        let whole = |bytes: &mut dyn Iterator<Item = [u8; 4]>, n: usize, dst: &mut [u8]| -> core::result::Result<usize, (Error, usize)> {
            if dst.len() < n * 4 {
                return Err((Error::new(Status::BufferTooSmall, "dst_cap", dst.len() as u64, "buffer too small; the needed length is reported"), n * 4));
            }
            for (chunk, b) in dst.chunks_exact_mut(4).zip(bytes) {
                chunk.copy_from_slice(&b);
            }
            Ok(n * 4)
        };
        match kind {
            ResultKind::Text => {
                let avail = &s.text[s.read..s.released];
                let mut n = avail.len().min(dst.len());
                while n > 0 && n < avail.len() && (avail[n] & 0xC0) == 0x80 {
                    n -= 1;
                }
                if n == 0 && !avail.is_empty() {
                    // Not even the next character fits: say so (and how long it is) rather than
                    // return 0 bytes, which means "nothing new".
                    let next_char = 1 + avail[1..].iter().take_while(|&&b| (b & 0xC0) == 0x80).count();
                    return Err((
                        Error::new(Status::BufferTooSmall, "dst_cap", dst.len() as u64, "smaller than the next character; its length is reported"),
                        next_char,
                    ));
                }
                dst[..n].copy_from_slice(&avail[..n]);
                s.read += n;
                Ok(n)
            }
            ResultKind::Tokens => whole(&mut s.generated.iter().map(|t| t.to_le_bytes()), s.generated.len(), dst),
            ResultKind::PromptTokens => whole(&mut s.prompt_tokens.iter().map(|t| t.to_le_bytes()), s.prompt_tokens.len(), dst),
            ResultKind::Tokenized => whole(&mut l.tokenized.iter().map(|t| t.to_le_bytes()), l.tokenized.len(), dst),
            ResultKind::Logits => whole(&mut l.work_logits.iter().map(|x| x.to_le_bytes()), l.work_logits.len(), dst),
            ResultKind::EvalSidecar => whole_bytes(&self.eval_sidecar, dst),
            ResultKind::ChatPrompt => whole_bytes(&l.chat_prompt, dst),
            ResultKind::ScoreLogprobs => whole(&mut l.score.logprobs.iter().map(|x| x.to_le_bytes()), l.score.logprobs.len(), dst),
            ResultKind::ScoreArgmax => whole(&mut l.score.argmax.iter().map(|t| t.to_le_bytes()), l.score.argmax.len(), dst),
            ResultKind::GrammarStats => {
                let f = |x: f64| (x as f32).to_bits();
                let words = [
                    s.matcher.is_some() as u32,
                    s.masked_steps,
                    (l.mask_cache.hits - s.cache_hits_at_start.min(l.mask_cache.hits)).min(u32::MAX as u64) as u32,
                    l.mask_cache.len() as u32,
                    f(s.mask_ms),
                    l.vocab_trie.as_ref().map_or(0, VocabTrie::n_nodes) as u32,
                    f(l.trie_build_ms),
                    s.matcher.as_ref().map_or(0, |m| m.grammar().n_rules()) as u32,
                    s.whole_mask_steps,
                ];
                whole(&mut words.iter().map(|w| w.to_le_bytes()), words.len(), dst)
            }
            ResultKind::LoadProgress => whole_bytes(&self.load_progress.to_bytes(), dst),
            ResultKind::Session => whole_bytes(&l.snapshot, dst),
            ResultKind::Grammar => whole_bytes(self.settings.grammar.as_ref().map_or(&[][..], |(_, g)| g.source().as_bytes()), dst),
            ResultKind::State => {
                let words = [s.state as u32, s.stop_reason as u32, s.prompt_tokens.len() as u32, s.generated.len() as u32];
                whole(&mut words.iter().map(|w| w.to_le_bytes()), 4, dst)
            }
        }
    }

    /// Keeps an eval run's sidecar for `ResultKind::EvalSidecar`, replacing the previous one.
    pub fn keep_eval_sidecar(&mut self, sidecar: Vec<u8>) {
        self.eval_sidecar = sidecar;
    }

    /// The loaded package's identity and the adapters applied to it (`WRONG_STATE` without a model).
    pub fn identity(&self) -> Result<Identity> {
        let l = self.loaded()?;
        let p = l.model.package();
        let mut adapter_digests = Vec::new();
        adapter_digests.try_reserve_exact(l.adapters.len()).map_err(|_| oom("adapter_digests", l.adapters.len() * 4))?;
        adapter_digests.extend(l.adapters.digests());
        Ok(Identity {
            model: p.identity,
            artifact_crc: p.artifact_crc,
            quant: p.quant,
            adapter_digests,
            assembly_state_crc: l.adapters.state_crc(l.assembly_state_crc),
        })
    }

    pub fn state(&self) -> (GenState, StopReason) {
        match &self.loaded {
            Some(l) => (l.session.state, l.session.stop_reason),
            None => (GenState::Idle, StopReason::None),
        }
    }

    pub fn diagnostics(&self, linear_memory_bytes: u64) -> Diagnostics {
        let Some(l) = &self.loaded else {
            return Diagnostics { linear_memory_bytes, threads: crate::pool::threads(), ..Default::default() };
        };
        let s = &l.session;
        let m = &l.model;
        let rate = |n: usize, ms: f64| if ms > 0.0 { (n as f64 * 1000.0 / ms) as f32 } else { 0.0 };
        let id = m.package().identity;
        Diagnostics {
            model_loaded: true,
            quant_mode: Some(m.package().quant.code()),
            prompt_tokens: s.prompt_tokens.len() as u32,
            generated_tokens: s.generated.len() as u32,
            prefill_tokens_per_s: rate(s.prompt_tokens.len(), s.prefill_ms),
            decode_tokens_per_s: rate(s.generated.len(), s.decode_ms),
            peak_scratch_bytes: (m.scratch_bytes() + m.kv_cache_bytes()) as u64,
            kv_len: m.kv_len() as u32,
            context_len: m.context_len() as u32,
            adapters_applied: l.adapters.len() as u32,
            assembly_state_crc: l.adapters.state_crc(l.assembly_state_crc),
            package_bytes: m.package_bytes() as u64,
            kv_cache_bytes: m.kv_cache_bytes() as u64,
            n_params: id.n_params,
            tensor_layout_crc: id.tensor_layout_crc,
            tokenizer_crc: id.tokenizer_crc,
            linear_memory_bytes,
            prefill_ms: s.prefill_ms as f32,
            decode_ms: s.decode_ms as f32,
            chat_template: l.tokenizer.chat_template() as u32,
            kv_dtype: m.kv_dtype() as u32,
            total_generated_tokens: l.total_generated,
            unencodable_bytes: l.unencodable_bytes,
            threads: crate::pool::threads(),
        }
    }
}

/// Copies a byte result whole, or BUFFER_TOO_SMALL with its length.
fn whole_bytes(bytes: &[u8], dst: &mut [u8]) -> core::result::Result<usize, (Error, usize)> {
    let n = bytes.len();
    if dst.len() < n {
        return Err((Error::new(Status::BufferTooSmall, "dst_cap", dst.len() as u64, "buffer too small; the needed length is reported"), n));
    }
    dst[..n].copy_from_slice(bytes);
    Ok(n)
}

fn finish(l: &mut Loaded, reason: StopReason) {
    let s = &mut l.session;
    // Within the room `step` reserved.
    s.decoder.finish(&mut s.text);
    s.released = s.text.len();
    s.state = GenState::Finished;
    s.stop_reason = reason;
}

/// Earliest start of a stop string that ends in the text appended after `before`.
fn find_stop(text: &[u8], before: usize, stops: &[Vec<u8>]) -> Option<usize> {
    stops
        .iter()
        .filter_map(|stop| {
            let from = before.saturating_sub(stop.len() - 1);
            text[from..].windows(stop.len()).position(|w| w == &stop[..]).map(|i| from + i)
        })
        .min()
}

/// How many trailing bytes of `text` could be the start of a stop string (held back from the host).
fn held_back(text: &[u8], stops: &[Vec<u8>]) -> usize {
    stops.iter().map(|stop| (1..stop.len()).rev().find(|&k| k <= text.len() && text.ends_with(&stop[..k])).unwrap_or(0)).max().unwrap_or(0)
}

mod constrain;

// The tests' allocator refuses allocations on request (the only way to reach OUT_OF_MEMORY natively).
#[cfg(test)]
#[allow(unsafe_code)]
mod tests;
