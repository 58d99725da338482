//! The ABI-sequence target: the fuzz input is a program of export calls with arguments, run against
//! a fresh instance of the real `.wasm` module in wasmtime. Any trap is a crash (the module promises
//! a status for every call, whatever the arguments and order).
//!
//! Program encoding (one byte picks the operation, then its arguments, each read from the input;
//! missing bytes read as 0). Pointer and length arguments are mostly drawn from the host's live
//! buffers so calls get past the bounds checks; the `put_*` operations copy a valid package,
//! adapter, eval file or text into a new buffer, so load, generate, adapter and eval paths are
//! reached. [`ProgramWriter`] writes programs in this encoding (the seeds).

use std::fmt::Write as _;
use std::sync::OnceLock;

use harness::runtime::{ModuleFile, Runtime};
use tinyrustlm::format::ModelIdentity;

use super::checks::{tiny_shape, Outcome, MODEL_SEED};

/// Operations, in opcode order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Alloc,
    Dealloc,
    Fill,
    PutPackage,
    LoadModel,
    UnloadModel,
    SetSampling,
    AddStopString,
    ClearStopStrings,
    Tokenize,
    GenerateStart,
    GenerateStep,
    Generate,
    Reset,
    PutAdapter,
    ValidateAdapter,
    ApplyAdapter,
    RemoveLastAdapter,
    ResetAdapters,
    PutEval,
    RunEval,
    ReadResult,
    ReadDiagnostics,
    LastError,
    AbiVersion,
    PutText,
    // Appended, so the opcodes of older seeds and corpus files keep their meaning.
    RenderChat,
    ScoreTokens,
    SaveSession,
    RestoreSession,
}

const N_OPS: u8 = Op::RestoreSession as u8 + 1;
/// Calls per input: bounds the time of one run.
const MAX_CALLS: usize = 48;
/// Linear-memory cap of the instance: a huge `alloc` fails with a status instead of growing
/// memory by gigabytes.
const MEMORY_LIMIT: usize = 48 << 20;

impl Op {
    fn from_byte(b: u8) -> Op {
        const ALL: [Op; N_OPS as usize] = [
            Op::Alloc,
            Op::Dealloc,
            Op::Fill,
            Op::PutPackage,
            Op::LoadModel,
            Op::UnloadModel,
            Op::SetSampling,
            Op::AddStopString,
            Op::ClearStopStrings,
            Op::Tokenize,
            Op::GenerateStart,
            Op::GenerateStep,
            Op::Generate,
            Op::Reset,
            Op::PutAdapter,
            Op::ValidateAdapter,
            Op::ApplyAdapter,
            Op::RemoveLastAdapter,
            Op::ResetAdapters,
            Op::PutEval,
            Op::RunEval,
            Op::ReadResult,
            Op::ReadDiagnostics,
            Op::LastError,
            Op::AbiVersion,
            Op::PutText,
            Op::RenderChat,
            Op::ScoreTokens,
            Op::SaveSession,
            Op::RestoreSession,
        ];
        ALL[(b % N_OPS) as usize]
    }
}

/// Valid inputs the program can copy into buffers.
pub struct Fixtures {
    pub package: Vec<u8>,
    pub adapters: Vec<Vec<u8>>,
    pub eval: Vec<u8>,
}

pub const TEXTS: &[&[u8]] = &[b"Once upon a time", b"<s>ab</s>", b"\xff\xfe\xc3", "caf\u{e9} \u{4e16}".as_bytes(), b"", b"a"];

/// The synthetic model (f32, tied) and adapters made for it: dense f32 and q8_0, sparse, low-rank.
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        use harness::adapter::{AdapterSpec, Delta, Kind, TargetSpec};
        let shape = tiny_shape(true);
        let package = harness::package::write(&harness::synth::synthetic_model(&shape, MODEL_SEED), tinyrustlm::quant::DType::F32).expect("synthetic package");
        let parent: ModelIdentity = tinyrustlm::format::parse(&package).expect("valid package").identity;
        let (d, kv, ffn) = (shape.dim, shape.dim / shape.n_heads * shape.n_kv_heads, shape.ffn_dim);
        let ramp = |n: u32, step: f32| (0..n).map(|i| ((i % 7) as f32 - 3.0) * step).collect::<Vec<f32>>();
        let q8_rows = |rows: u32, cols: u32| {
            let mut out = vec![0u8; (rows * cols / 32 * 34) as usize];
            for row in 0..rows as usize {
                let values = ramp(cols, 0.01);
                let n = (cols / 32 * 34) as usize;
                tinyrustlm::quant::quantize_row(tinyrustlm::quant::DType::Q8_0, &values, &mut out[row * n..(row + 1) * n]);
            }
            out
        };
        let spec = |kind, scale, targets| AdapterSpec { kind, parent, scale, targets };
        let adapters = [
            spec(Kind::Dense, 1.0, vec![TargetSpec { name: "blk.0.attn_q.weight".into(), rows: d, cols: d, delta: Delta::DenseF32(ramp(d * d, 0.01)) }]),
            spec(Kind::Dense, 0.5, vec![TargetSpec { name: "blk.0.attn_k.weight".into(), rows: kv, cols: d, delta: Delta::DenseQ8_0(q8_rows(kv, d)) }]),
            spec(
                Kind::Sparse,
                1.0,
                vec![
                    TargetSpec {
                        name: "token_embd.weight".into(),
                        rows: 258,
                        cols: d,
                        delta: Delta::Sparse(vec![(0, 0.5), (97 * d, -0.25), (258 * d - 1, 1.0)]),
                    },
                    TargetSpec { name: "output_norm.weight".into(), rows: 1, cols: d, delta: Delta::Sparse(vec![(3, 0.125)]) },
                ],
            ),
            spec(
                Kind::LowRank,
                0.25,
                vec![TargetSpec {
                    name: "blk.0.ffn_down.weight".into(),
                    rows: d,
                    cols: ffn,
                    delta: Delta::LowRank { rank: 2, a: ramp(2 * ffn, 0.1), b: ramp(d * 2, 0.1) },
                }],
            ),
        ]
        .iter()
        .map(AdapterSpec::to_bytes)
        .collect();
        let eval = b"{\"suite\": \"fuzz\", \"version\": \"1\", \"min_pass_rate\": 0.5}\n\
{\"id\": \"a\", \"prompt\": \"ab\", \"expected\": \"x\", \"match\": \"prefix\", \"max_tokens\": 3}\n\
{\"id\": \"b\", \"prompt\": \"hi\", \"chat\": true, \"expected\": \"\", \"max_tokens\": 2, \"stop\": [\"a\"]}\n"
            .to_vec();
        Fixtures { package, adapters, eval }
    })
}

/// The module under test: `TRL_WASM` or the release build `make wasm` writes.
pub fn module() -> &'static ModuleFile {
    static M: OnceLock<ModuleFile> = OnceLock::new();
    M.get_or_init(|| {
        let path = std::env::var_os("TRL_WASM").map(std::path::PathBuf::from).unwrap_or_else(harness::default_wasm_path);
        assert!(path.exists(), "{} is missing: run `make wasm` first", path.display());
        ModuleFile::load(&path).unwrap_or_else(|e| panic!("compiling {}: {e:#}", path.display()))
    })
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// Values worth trying for float parameters; mode 15 takes raw bits.
const FLOATS: [f32; 15] = [0.0, 0.5, 0.7, 1.0, 1.1, 2.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-30, 1e30, f32::MAX, f32::MIN_POSITIVE, -0.0];

struct Session<'a> {
    rt: Runtime,
    input: Input<'a>,
    /// Live host buffers, oldest first: (ptr, len).
    live: Vec<(u32, u32)>,
    freed: u32,
    trace: String,
}

impl Session<'_> {
    /// Pointer argument: mode byte, then its operands.
    fn ptr(&mut self) -> u32 {
        let mode = self.input.byte();
        let k = self.input.byte() as usize;
        let pick = |live: &Vec<(u32, u32)>| live.len().checked_sub(1 + k % live.len().max(1)).map(|i| live[i]);
        match mode % 8 {
            0..=2 => pick(&self.live).map_or(0, |(p, _)| p),
            3 => pick(&self.live).map_or(0, |(p, len)| p + (self.input.byte() as u32 % len.max(1))),
            4 => pick(&self.live).map_or(0, |(p, len)| p + len),
            5 => self.freed,
            6 => self.input.u32(),
            _ => 0,
        }
    }

    /// Length argument for a range starting at `ptr`.
    fn len(&mut self, ptr: u32) -> u32 {
        let fit = self.live.iter().find(|(p, len)| ptr >= *p && ptr <= p + len).map_or(0, |(p, len)| p + len - ptr);
        match self.input.byte() % 8 {
            0..=2 => fit,
            3 => fit.wrapping_add(1),
            4 => self.input.byte() as u32,
            5 => self.input.u32(),
            6 => fit / 2,
            _ => 0,
        }
    }

    /// Token and step counts: mostly small.
    pub fn count(&mut self) -> u32 {
        match self.input.byte() {
            0..=239 => self.input.byte() as u32 % 12,
            240..=251 => self.input.u32(),
            _ => u32::MAX,
        }
    }

    pub fn flags(&mut self) -> u32 {
        match self.input.byte() {
            0..=223 => self.input.byte() as u32 & 7,
            _ => self.input.u32(),
        }
    }

    fn float(&mut self) -> f32 {
        let b = self.input.byte() as usize;
        if b % 16 == 15 {
            f32::from_bits(self.input.u32())
        } else {
            FLOATS[b % 16]
        }
    }

    fn call<P: wasmtime::WasmParams + std::fmt::Debug + Copy>(&mut self, name: &str, args: P) -> u32 {
        let _ = write!(self.trace, "\n  {name}{args:?}");
        match self.rt.call_status(name, args) {
            Ok(r) => {
                let _ = write!(self.trace, " -> {r}");
                r
            }
            Err(e) => panic!("{name} trapped: {e:#}\ncalls:{}", self.trace),
        }
    }

    /// Copies `bytes` into a new buffer (host side: alloc, then a plain memory write).
    fn put(&mut self, bytes: &[u8]) -> u32 {
        let size = bytes.len().max(1) as u32;
        let ptr = self.call("alloc", size);
        if ptr != 0 {
            self.rt.write(ptr, bytes).expect("writing inside a buffer alloc returned");
            self.live.push((ptr, size));
        }
        ptr
    }

    fn step(&mut self, op: Op) -> u32 {
        match op {
            Op::Alloc => {
                let size = match self.input.byte() % 4 {
                    0 | 1 => self.input.byte() as u32,
                    2 => u16::from_le_bytes([self.input.byte(), self.input.byte()]) as u32,
                    _ => self.input.u32(),
                };
                let ptr = self.call("alloc", size);
                if ptr != 0 {
                    assert!(size > 0, "alloc(0) returned a pointer");
                    self.live.push((ptr, size));
                }
                ptr
            }
            Op::Dealloc => {
                let ptr = self.ptr();
                let s = self.call("dealloc", ptr);
                if let Some(i) = self.live.iter().position(|&(p, _)| p == ptr) {
                    assert_eq!(s, 0, "dealloc of a live buffer failed");
                    self.live.remove(i);
                    self.freed = ptr;
                }
                s
            }
            Op::Fill => {
                let ptr = self.ptr();
                let n = self.input.byte() as usize;
                let bytes = self.input.bytes(n);
                if let Some(&(p, len)) = self.live.iter().find(|(p, len)| ptr >= *p && ptr < p + len) {
                    let n = bytes.len().min((p + len - ptr) as usize);
                    self.rt.write(ptr, &bytes[..n]).expect("writing inside a live buffer");
                }
                0
            }
            Op::PutPackage => {
                let mut package = fixtures().package.clone();
                // Mode 1: one byte changed (a damaged package whose checksums catch it).
                if self.input.byte() % 4 == 1 {
                    let at = self.input.u32() as usize % package.len();
                    package[at] ^= self.input.byte() | 1;
                }
                self.put(&package)
            }
            Op::LoadModel => {
                let ptr = self.ptr();
                let len = self.len(ptr);
                let ctx = match self.input.byte() % 4 {
                    0 | 1 => 0,
                    2 => self.input.byte() as u32,
                    _ => self.input.u32(),
                };
                let flags = self.flags();
                let s = self.call("load_model", (ptr, len, ctx, flags));
                if s == 0 {
                    // The module owns the buffer now.
                    let i = self.live.iter().position(|&(p, l)| p == ptr && l == len).expect("load_model accepted a buffer the host does not hold");
                    self.live.remove(i);
                }
                s
            }
            Op::UnloadModel => self.call("unload_model", ()),
            Op::SetSampling => {
                let args = (self.float(), self.count(), self.float(), self.float(), self.float(), self.count(), self.input.u32() as u64);
                self.call("set_sampling", args)
            }
            Op::AddStopString => {
                let ptr = self.ptr();
                let len = self.len(ptr);
                self.call("add_stop_string", (ptr, len))
            }
            Op::ClearStopStrings => self.call("clear_stop_strings", ()),
            Op::Tokenize => {
                let ptr = self.ptr();
                let len = self.len(ptr);
                let flags = self.flags();
                self.call("tokenize", (ptr, len, flags))
            }
            Op::GenerateStart | Op::Generate => {
                let ptr = self.ptr();
                let len = self.len(ptr);
                let n = self.count();
                let flags = self.flags();
                self.call(if op == Op::Generate { "generate" } else { "generate_start" }, (ptr, len, n, flags))
            }
            Op::GenerateStep => {
                let n = self.count();
                self.call("generate_step", n)
            }
            Op::Reset => self.call("reset", ()),
            Op::PutAdapter => {
                let f = fixtures();
                let i = self.input.byte() as usize % f.adapters.len();
                let bytes = f.adapters[i].clone();
                self.put(&bytes)
            }
            Op::ValidateAdapter | Op::ApplyAdapter => {
                let ptr = self.ptr();
                let len = self.len(ptr);
                self.call(if op == Op::ApplyAdapter { "apply_adapter_delta" } else { "validate_adapter_delta" }, (ptr, len))
            }
            Op::RemoveLastAdapter => self.call("remove_last_adapter", ()),
            Op::SaveSession => self.call("save_session", ()),
            Op::RestoreSession => {
                let ptr = self.ptr();
                let len = self.len(ptr);
                self.call("restore_session", (ptr, len))
            }
            Op::ResetAdapters => self.call("reset_adapters", ()),
            Op::PutEval => {
                let bytes = fixtures().eval.clone();
                self.put(&bytes)
            }
            Op::RunEval => {
                let ptr = self.ptr();
                let len = self.len(ptr);
                let flags = if self.input.byte() == 255 { self.input.u32() } else { 0 };
                self.call("run_eval", (ptr, len, flags))
            }
            Op::ReadResult => {
                // Every kind and the first code above them (codes may have gaps: those are undefined too).
                let top = tinyrustlm::abi_facts::ResultKind::TABLE.iter().map(|&(_, code)| code).max().unwrap_or(0);
                let kind = self.input.byte() as u32 % (top + 2);
                let dst = self.ptr();
                let cap = self.len(dst);
                let len_out = self.ptr();
                self.call("read_result", (kind, dst, cap, len_out))
            }
            Op::ReadDiagnostics => {
                let dst = self.ptr();
                let cap = self.len(dst);
                self.call("read_diagnostics", (dst, cap))
            }
            Op::LastError => {
                let dst = self.ptr();
                let cap = self.len(dst);
                let len_out = self.ptr();
                self.call("last_error", (dst, cap, len_out))
            }
            Op::AbiVersion => self.call("abi_version", ()),
            Op::RenderChat => {
                let ptr = self.ptr();
                let len = self.len(ptr);
                let flags = self.flags();
                self.call("render_chat", (ptr, len, flags))
            }
            Op::ScoreTokens => {
                // A buffer's bytes read as u32 ids (mostly beyond a tiny vocabulary; `Fill` writes
                // small ones), and a first_scored in and around 1..=n_tokens.
                let ptr = self.ptr();
                let n_tokens = self.len(ptr) / 4;
                let first_scored = self.input.byte() as u32 % 8;
                let flags = if self.input.byte() == 255 { self.input.u32() } else { 0 };
                self.call("score_tokens", (ptr, n_tokens, first_scored, flags))
            }
            Op::PutText => {
                let b = self.input.byte();
                let text = if b < 128 {
                    TEXTS[b as usize % TEXTS.len()].to_vec()
                } else {
                    let n = self.input.byte() as usize % 64;
                    self.input.bytes(n)
                };
                self.put(&text)
            }
        }
    }
}

/// Runs one program. `feature` receives a small number per (operation, status) and per pair of
/// consecutive (operation, status), so the fuzzer can tell programs that reach new states apart
/// (the module's own code is not instrumented).
pub fn abi_sequence(data: &[u8], feature: &mut dyn FnMut(usize)) -> Outcome {
    let rt = Runtime::with_memory_limit(module(), Some(MEMORY_LIMIT)).expect("instantiating the module");
    let mut s = Session { rt, input: Input { data, pos: 0 }, live: Vec::new(), freed: 0, trace: String::new() };
    let mut prev = 0usize;
    let mut calls = 0;
    while !s.input.done() && calls < MAX_CALLS {
        let op = Op::from_byte(s.input.byte());
        let status = s.step(op);
        let here = op as usize * 8 + (status as usize).min(7);
        feature(here);
        feature(256 + (prev * 211 + here) % 3840);
        prev = here;
        calls += 1;
    }
    Outcome::Accepted
}

/// Writes programs in the encoding [`abi_sequence`] reads (used for the seeds).
#[derive(Default)]
pub struct ProgramWriter(pub Vec<u8>);

impl ProgramWriter {
    pub fn op(&mut self, op: Op) -> &mut Self {
        self.0.push(op as u8);
        self
    }
    /// The newest live buffer, from its start.
    pub fn newest(&mut self) -> &mut Self {
        self.0.extend([0, 0]);
        self
    }
    /// The newest-but-`k` live buffer.
    pub fn buffer(&mut self, k: u8) -> &mut Self {
        self.0.extend([0, k]);
        self
    }
    /// The whole of the buffer the pointer is in.
    pub fn fit(&mut self) -> &mut Self {
        self.0.push(0);
        self
    }
    pub fn count(&mut self, n: u8) -> &mut Self {
        self.0.extend([0, n]);
        self
    }
    pub fn flags(&mut self, f: u8) -> &mut Self {
        self.0.extend([0, f]);
        self
    }

    pub fn put_package(&mut self) -> &mut Self {
        self.op(Op::PutPackage).0.push(0);
        self
    }
    pub fn load_newest(&mut self) -> &mut Self {
        self.op(Op::LoadModel).newest().fit();
        self.0.push(0); // context 0: the default
        self.flags(0)
    }
    pub fn put_text(&mut self, i: u8) -> &mut Self {
        self.op(Op::PutText).0.push(i);
        self
    }
    pub fn put_adapter(&mut self, i: u8) -> &mut Self {
        self.op(Op::PutAdapter).0.push(i);
        self
    }
    pub fn put_eval(&mut self) -> &mut Self {
        self.op(Op::PutEval)
    }
    pub fn alloc(&mut self, size: u8) -> &mut Self {
        self.op(Op::Alloc).0.extend([0, size]);
        self
    }
    pub fn tokenize_newest(&mut self, flags: u8) -> &mut Self {
        self.op(Op::Tokenize).newest().fit().flags(flags)
    }
    pub fn generate_newest(&mut self, n: u8, flags: u8) -> &mut Self {
        self.op(Op::Generate).newest().fit().count(n).flags(flags)
    }
    pub fn generate_start_newest(&mut self, n: u8, flags: u8) -> &mut Self {
        self.op(Op::GenerateStart).newest().fit().count(n).flags(flags)
    }
    pub fn step(&mut self, n: u8) -> &mut Self {
        self.op(Op::GenerateStep).count(n)
    }
    pub fn stop_string_newest(&mut self) -> &mut Self {
        self.op(Op::AddStopString).newest().fit()
    }
    pub fn validate_newest(&mut self) -> &mut Self {
        self.op(Op::ValidateAdapter).newest().fit()
    }
    pub fn apply_newest(&mut self) -> &mut Self {
        self.op(Op::ApplyAdapter).newest().fit()
    }
    pub fn remove_last_adapter(&mut self) -> &mut Self {
        self.op(Op::RemoveLastAdapter)
    }
    pub fn reset_adapters(&mut self) -> &mut Self {
        self.op(Op::ResetAdapters)
    }
    pub fn run_eval_newest(&mut self) -> &mut Self {
        self.op(Op::RunEval).newest().fit().0.push(0);
        self
    }
    /// `read_result(kind)` into the newest-but-one buffer, `len_out` in the newest.
    pub fn read_result(&mut self, kind: u8) -> &mut Self {
        self.op(Op::ReadResult).0.push(kind);
        self.buffer(1).fit().newest()
    }
    pub fn read_diagnostics_newest(&mut self) -> &mut Self {
        self.op(Op::ReadDiagnostics).newest().fit()
    }
    pub fn last_error(&mut self) -> &mut Self {
        self.op(Op::LastError).buffer(1).fit().newest()
    }
    pub fn set_sampling(&mut self) -> &mut Self {
        // temperature 0.7, top_k 5, top_p 0.5, min_p 0, penalty 1.1, window 8, seed.
        self.op(Op::SetSampling).0.extend([2, 0, 5, 1, 0, 4, 0, 8, 7, 0, 0, 0]);
        self
    }
    pub fn raw(&mut self, op: Op) -> &mut Self {
        self.op(op)
    }
}
