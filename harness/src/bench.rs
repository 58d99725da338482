//! `trl bench`: load time, prefill and decode speed, memory and module size, measured side by side
//! in one run for the wasm module (wasmtime), a native build of the same crate, and optionally
//! llama.cpp (through `llama-cpp-python`, single-threaded, same prompt and token counts).
//!
//! Figures are medians over `runs` passes; the machine is shared and noisy, so only ratios taken
//! in the same run are meaningful.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::runtime::{result_kind, ModuleFile, Runtime, GEN_IGNORE_EOG};

/// A prose paragraph; the prompt is cut from repetitions of it to an exact token count.
const PROMPT_SOURCE: &str = "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg \
combined movable metal type, oil-based ink and a wooden press adapted from those used to make wine. Books, \
which had been copied by hand for centuries, could now be produced in hundreds of identical copies, and \
ideas travelled across Europe faster than ever before. ";

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// The model and storage mode as the tables name them: the storage mode alone for the
    /// SmolLM2 sweep, the `--extra` label otherwise. Rows with the same label are compared.
    pub label: String,
    pub engine: String,
    pub package: String,
    pub quant: String,
    pub load_ms: f64,
    /// Time to copy the package bytes into the module's memory (the floor for load_ms).
    pub copy_ms: f64,
    /// The same load streamed (wasm rows; NaN elsewhere): `load_begin`, one `load_append` per MiB
    /// from the bytes in the host's memory, `load_finish`, each chunk verified as it arrives.
    pub stream_ms: f64,
    /// Of `stream_ms`, the last chunk's `load_append` and `load_finish`: the wait left once the last
    /// byte has arrived, when the rest overlapped the download or file read.
    pub stream_tail_ms: f64,
    pub prefill_tokens: usize,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens: usize,
    pub decode_tokens_per_s: f64,
    pub peak_memory_bytes: u64,
    /// The package's size and the KV cache the module allocated for the bench context (wasm rows;
    /// 0 elsewhere): what peak memory is held against.
    pub package_bytes: u64,
    pub kv_cache_bytes: u64,
    pub runs: usize,
    /// Threads the engine ran with (ours: 1 + workers; llama.cpp: n_threads and n_threads_batch).
    pub threads: u32,
    /// Rows decoding under a JSON Schema: the median over runs of (decode tok/s with the schema ÷
    /// without it), both measured back to back in the same instance, so machine noise cancels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_decode_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub module_bytes: u64,
    pub results: Vec<Figures>,
    /// Time to first token of a long conversation restored from a snapshot vs prefilled again.
    pub sessions: Vec<SessionFigures>,
}

/// `trl bench --session-tokens N`: a conversation of `conversation_tokens` tokens gets one more
/// short turn, and the first token of the answer is timed two ways, in fresh instances with the
/// model loaded (loading not counted): prefilling the whole conversation again, or restoring it
/// from a snapshot (the bytes copied into the module and `restore_session`) and prefilling only
/// the new turn. Medians over `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct SessionFigures {
    pub label: String,
    pub package: String,
    pub conversation_tokens: usize,
    pub turn_tokens: usize,
    pub from_scratch_ms: f64,
    pub from_snapshot_ms: f64,
    /// Of `from_snapshot_ms`: copying the snapshot in and `restore_session`.
    pub restore_ms: f64,
    pub save_ms: f64,
    pub snapshot_bytes: u64,
    pub kv_f16: bool,
    pub runs: usize,
}

/// The new turn after the restored conversation.
const SESSION_TURN: &str = " In one sentence, what changed?";

/// Measures [`SessionFigures`] for `package` with the single-thread module. Both ways must give
/// the same first token (greedy), or the figure is refused.
pub fn bench_session(module: &ModuleFile, label: &str, package: &Path, conversation_tokens: usize, runs: usize, load_flags: u32) -> Result<SessionFigures> {
    let bytes = std::fs::read(package).with_context(|| format!("reading {}", package.display()))?;
    let context = (conversation_tokens + 64) as u32;
    let fresh = || -> Result<Runtime> {
        let mut rt = Runtime::new(module)?;
        rt.load_model_with_flags(&bytes, context, load_flags)?;
        Ok(rt)
    };
    let first_token = |rt: &mut Runtime, prompt: &str, flags: u32| -> Result<u32> {
        rt.generate_start(prompt, 1, flags | GEN_IGNORE_EOG)?;
        rt.generate_step(1)?;
        Ok(rt.read_u32s(result_kind::TOKENS)?[0])
    };
    let (mut scratch, mut restored, mut restore, mut save) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut snapshot_bytes, mut turn_tokens) = (0, 0);
    for _ in 0..runs {
        let mut a = fresh()?;
        let history = prompt_of(&mut a, conversation_tokens)?;
        turn_tokens = a.tokenize(&format!("{history}{SESSION_TURN}"), false)?.len() - conversation_tokens;
        // The conversation so far, then saved (the generation of its one token is not timed).
        a.generate_start(&history, 0, GEN_IGNORE_EOG)?;
        let t = Instant::now();
        let snapshot = a.save_session()?;
        save.push(ms(t));
        snapshot_bytes = snapshot.len() as u64;
        drop(a);

        let mut b = fresh()?;
        let full = format!("{history}{SESSION_TURN}");
        let t = Instant::now();
        let want = first_token(&mut b, &full, 0)?;
        scratch.push(ms(t));
        drop(b);

        let mut c = fresh()?;
        let t = Instant::now();
        c.restore_session(&snapshot)?;
        restore.push(ms(t));
        let got = first_token(&mut c, SESSION_TURN, crate::runtime::GEN_CONTINUE)?;
        restored.push(ms(t));
        anyhow::ensure!(got == want, "{label}: the first token after the restored conversation is {got}, prefilling it gives {want}");
    }
    Ok(SessionFigures {
        label: label.into(),
        package: package.display().to_string(),
        conversation_tokens,
        turn_tokens,
        from_scratch_ms: median(scratch),
        from_snapshot_ms: median(restored),
        restore_ms: median(restore),
        save_ms: median(save),
        snapshot_bytes,
        kv_f16: load_flags != 0,
        runs,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// A prompt of exactly `n` tokens (checked with the model's own tokenizer).
pub fn prompt_of(rt: &mut Runtime, n: usize) -> Result<String> {
    let words: Vec<&str> = PROMPT_SOURCE.split(' ').filter(|w| !w.is_empty()).collect();
    let mut text = String::new();
    let mut i = 0;
    loop {
        let candidate = if text.is_empty() { words[i % words.len()].to_string() } else { format!("{} {}", text, words[i % words.len()]) };
        let count = rt.tokenize(&candidate, false)?.len();
        if count > n {
            break;
        }
        text = candidate;
        i += 1;
        if count == n {
            return Ok(text);
        }
    }
    // Top up with single-character tokens until the count is exact.
    while rt.tokenize(&text, false)?.len() < n {
        text.push_str(" a");
    }
    let got = rt.tokenize(&text, false)?.len();
    if got != n {
        bail!("could not build a prompt of exactly {n} tokens (got {got})");
    }
    Ok(text)
}

#[derive(Clone)]
pub struct BenchConfig {
    pub runs: usize,
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    pub context: u32,
    /// `load_model` flags for the wasm engine (`LOAD_KV_F16`).
    pub load_flags: u32,
}

/// Per-run measurements of one engine on one package, reduced to medians by [`Samples::figures`].
#[derive(Default)]
struct Samples {
    load: Vec<f64>,
    copy: Vec<f64>,
    stream: Vec<f64>,
    stream_tail: Vec<f64>,
    prefill: Vec<f64>,
    decode: Vec<f64>,
}

impl Samples {
    fn figures(self, label: &str, engine: &str, package: &Path, quant: String, cfg: &BenchConfig, peak_memory_bytes: u64) -> Figures {
        Figures {
            label: label.into(),
            engine: engine.into(),
            package: package.display().to_string(),
            quant,
            load_ms: median(self.load),
            copy_ms: median(self.copy),
            stream_ms: median(self.stream),
            stream_tail_ms: median(self.stream_tail),
            prefill_tokens: cfg.prompt_tokens,
            prefill_tokens_per_s: median(self.prefill),
            decode_tokens: cfg.decode_tokens,
            decode_tokens_per_s: median(self.decode),
            peak_memory_bytes,
            package_bytes: 0,
            kv_cache_bytes: 0,
            runs: cfg.runs,
            threads: 1,
            schema_decode_ratio: None,
        }
    }
}

/// Engine label of the default module in the results.
pub const WASM_ENGINE: &str = "tinyrustlm wasm (wasmtime)";
/// Engine label of the relaxed-SIMD flavour.
pub const WASM_RELAXED_ENGINE: &str = "tinyrustlm wasm, relaxed SIMD (wasmtime)";

/// Bytes per `load_append` in the streamed-load figure (as `trl` reads a package file).
const STREAM_CHUNK: usize = 1 << 20;

/// Engine label of the default module generating under a JSON Schema.
pub const WASM_SCHEMA_ENGINE: &str = "tinyrustlm wasm, JSON schema (wasmtime)";

/// Engine label of the threaded flavour at `threads` threads.
pub fn wasm_threads_engine(threads: u32) -> String {
    format!("tinyrustlm wasm, threaded module (wasmtime, {threads} thread{})", if threads == 1 { "" } else { "s" })
}

/// Engine label of llama.cpp at `threads` threads.
pub fn llama_cpp_engine(threads: u32) -> String {
    format!("llama.cpp native ({threads} thread{})", if threads == 1 { "" } else { "s" })
}

pub fn bench_wasm(module: &ModuleFile, label: &str, engine: &str, package: &Path, cfg: &BenchConfig) -> Result<Figures> {
    bench_wasm_threads(module, 1, label, engine, package, cfg)
}

/// [`bench_wasm`] with `threads` threads (the threaded module; 1 for the others).
pub fn bench_wasm_threads(module: &ModuleFile, threads: u32, label: &str, engine: &str, package: &Path, cfg: &BenchConfig) -> Result<Figures> {
    let bytes = std::fs::read(package).with_context(|| format!("reading {}", package.display()))?;
    let mut samples = Samples::default();
    let mut peak = 0u64;
    let mut quant = String::new();
    let mut kv_cache_bytes = 0;
    for _ in 0..cfg.runs {
        let mut rt = Runtime::with_threads(module, threads, None)?;
        timed_load(&mut rt, &bytes, cfg, &mut samples)?;
        let prompt = prompt_of(&mut rt, cfg.prompt_tokens)?;
        let (prefill, n, decode) = timed_generation(&mut rt, &prompt, cfg.decode_tokens, cfg)?;
        anyhow::ensure!(n == cfg.decode_tokens, "generated {n} tokens, wanted {}", cfg.decode_tokens);
        samples.prefill.push(prefill);
        samples.decode.push(decode);
        peak = peak.max(rt.memory_size() as u64);
        let diagnostics = rt.diagnostics()?;
        quant = quant_name(diagnostics.quant_mode);
        kv_cache_bytes = diagnostics.kv_cache_bytes;
        drop(rt);
        let mut rt = Runtime::with_threads(module, threads, None)?;
        let (stream_ms, tail_ms) = stream_load(&mut rt, &bytes, cfg)?;
        samples.stream.push(stream_ms);
        samples.stream_tail.push(tail_ms);
    }
    let mut figures = samples.figures(label, engine, package, quant, cfg, peak);
    figures.package_bytes = bytes.len() as u64;
    figures.kv_cache_bytes = kv_cache_bytes;
    figures.threads = threads;
    Ok(figures)
}

/// Copies `bytes` into a fresh buffer of `rt` and loads it (`load_model`), recording the copy's
/// time and the whole load's (copy included) in `samples`.
fn timed_load(rt: &mut Runtime, bytes: &[u8], cfg: &BenchConfig, samples: &mut Samples) -> Result<()> {
    let t = Instant::now();
    let ptr = rt.alloc(bytes.len() as u32)?;
    rt.write(ptr, bytes)?;
    samples.copy.push(ms(t));
    let s = rt.call_status("load_model", (ptr, bytes.len() as u32, cfg.context, cfg.load_flags))?;
    anyhow::ensure!(s == 0, "load_model: {}", rt.last_error()?);
    samples.load.push(ms(t));
    Ok(())
}

/// One generation of at most `max_new_tokens` after `prompt` (`cfg.prompt_tokens` long), end of
/// generation ignored: prefill tokens/s, tokens generated, decode tokens/s.
fn timed_generation(rt: &mut Runtime, prompt: &str, max_new_tokens: usize, cfg: &BenchConfig) -> Result<(f64, usize, f64)> {
    let t = Instant::now();
    rt.generate_start(prompt, max_new_tokens as u32, GEN_IGNORE_EOG)?;
    let prefill = cfg.prompt_tokens as f64 * 1000.0 / ms(t);
    let t = Instant::now();
    while rt.state()?.running() {
        rt.generate_step(16)?;
    }
    let n = rt.read_u32s(result_kind::TOKENS)?.len();
    Ok((prefill, n, n as f64 * 1000.0 / ms(t)))
}

/// Decoding under `schema` against decoding free, paired: each run loads one instance, decodes the
/// prompt under the schema (at most `cfg.decode_tokens`, until the JSON is complete), then free for
/// as many tokens.
/// The row carries the schema's figures and the median of the per-run ratios.
pub fn bench_wasm_schema(module: &ModuleFile, label: &str, package: &Path, cfg: &BenchConfig, schema: &[u8]) -> Result<Figures> {
    let bytes = std::fs::read(package).with_context(|| format!("reading {}", package.display()))?;
    let mut samples = Samples::default();
    let mut ratios = Vec::new();
    let mut peak = 0u64;
    let mut quant = String::new();
    for _ in 0..cfg.runs {
        let mut rt = Runtime::new(module)?;
        timed_load(&mut rt, &bytes, cfg, &mut samples)?;
        let prompt = prompt_of(&mut rt, cfg.prompt_tokens)?;
        // Under the schema first, until the JSON is complete; then free for as many tokens, so
        // both decode the same number of positions after the same prompt.
        rt.set_grammar(schema, true)?;
        let (prefill, n, constrained) = timed_generation(&mut rt, &prompt, cfg.decode_tokens, cfg)?;
        rt.clear_grammar()?;
        anyhow::ensure!(n > 0, "generated nothing under the schema");
        let (_, n_free, free) = timed_generation(&mut rt, &prompt, n, cfg)?;
        anyhow::ensure!(n_free == n, "generated {n_free} tokens free, wanted {n}");
        samples.prefill.push(prefill);
        samples.decode.push(constrained);
        ratios.push(constrained / free);
        peak = peak.max(rt.memory_size() as u64);
        let diagnostics = rt.diagnostics()?;
        quant = quant_name(diagnostics.quant_mode);
    }
    let mut figures = samples.figures(label, WASM_SCHEMA_ENGINE, package, quant, cfg, peak);
    figures.package_bytes = bytes.len() as u64;
    figures.schema_decode_ratio = Some(median(ratios));
    Ok(figures)
}

/// A streamed load of `bytes` in STREAM_CHUNK pieces: its whole time, and the time from the last
/// chunk's `load_append` to the end of `load_finish` (what is left once the last byte has arrived).
fn stream_load(rt: &mut Runtime, bytes: &[u8], cfg: &BenchConfig) -> Result<(f64, f64)> {
    let t = Instant::now();
    rt.load_begin(bytes.len() as u32, cfg.context, cfg.load_flags)?;
    let scratch = rt.alloc(STREAM_CHUNK as u32)?;
    let chunks: Vec<&[u8]> = bytes.chunks(STREAM_CHUNK).collect();
    let (last, rest) = chunks.split_last().context("an empty package")?;
    for chunk in rest {
        rt.load_append_via(scratch, chunk)?;
    }
    let tail = Instant::now();
    rt.load_append_via(scratch, last)?;
    rt.load_finish()?;
    let (tail_ms, stream_ms) = (ms(tail), ms(t));
    rt.free(scratch)?;
    Ok((stream_ms, tail_ms))
}

fn quant_name(code: u32) -> String {
    match code {
        0 => "f32",
        1 => "q8_0",
        2 => "q4_0",
        3 => "q4_1",
        4 => "f16",
        5 => "q5_0",
        6 => "q5_1",
        7 => "q4_k",
        8 => "q5_k",
        9 => "q6_k",
        _ => "?",
    }
    .to_string()
}

fn native_clock() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// The same crate compiled for this machine (scalar kernels: SIMD128 exists only on wasm).
pub fn bench_native(label: &str, package: &Path, prompt: &str, cfg: &BenchConfig) -> Result<Figures> {
    use tinyrustlm::buffer::AlignedBytes;
    use tinyrustlm::engine::{Engine, ResultKind};
    let bytes = std::fs::read(package)?;
    let mut samples = Samples::default();
    let mut quant = String::new();
    for _ in 0..cfg.runs {
        let mut engine = Engine::new(native_clock);
        let t = Instant::now();
        let buf = AlignedBytes::copy_from(&bytes).map_err(|_| anyhow::anyhow!("out of memory"))?;
        samples.copy.push(ms(t));
        engine.load(buf, cfg.context, 0).map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
        samples.load.push(ms(t));
        let t = Instant::now();
        engine.start(prompt.as_bytes(), cfg.decode_tokens as u32, GEN_IGNORE_EOG).map_err(|e| anyhow::anyhow!("{e}"))?;
        samples.prefill.push(cfg.prompt_tokens as f64 * 1000.0 / ms(t));
        let t = Instant::now();
        engine.step(cfg.decode_tokens as u32).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut tokens = vec![0u8; cfg.decode_tokens * 4];
        let n = engine.read(ResultKind::Tokens, &mut tokens).map_err(|(e, _)| anyhow::anyhow!("{e}"))? / 4;
        anyhow::ensure!(n == cfg.decode_tokens, "native generated {n} tokens");
        samples.decode.push(n as f64 * 1000.0 / ms(t));
        quant = quant_name(engine.diagnostics(0).quant_mode.map_or(u32::MAX, u32::from));
    }
    Ok(samples.figures(label, "tinyrustlm native (scalar kernels)", package, quant, cfg, 0))
}

/// Where llama-cpp-python comes from: a folder that already holds it (`--llama-cpp-python`; its
/// shared libraries may live elsewhere, named by `LLAMA_CPP_LIB_PATH`, which the script inherits),
/// or `CACHE/llama-cpp-python`, installed there on first use.
pub enum LlamaCppPython {
    Existing(PathBuf),
    InstallInto(PathBuf),
}

impl LlamaCppPython {
    /// The folder to put on `PYTHONPATH`, installing llama-cpp-python first when that is the plan.
    fn site(&self) -> Result<&Path> {
        match self {
            LlamaCppPython::Existing(site) => {
                anyhow::ensure!(site.join("llama_cpp").is_dir(), "{} has no llama_cpp/ package (--llama-cpp-python)", site.display());
                Ok(site)
            }
            LlamaCppPython::InstallInto(site) => {
                install_llama_cpp_python(site)?;
                Ok(site)
            }
        }
    }
}

/// Which GGUF llama.cpp runs: the file as given, or the shipped one requantized to a storage mode
/// by llama.cpp's quantizer (cached in `--cache` by the script).
#[derive(Clone, Copy)]
pub enum LlamaGguf<'a> {
    AsIs(&'a Path),
    Requantized { source: &'a Path, quant: &'a str },
}

fn install_llama_cpp_python(site: &Path) -> Result<()> {
    if !site.join("llama_cpp").exists() {
        eprintln!("installing llama-cpp-python into {} (builds llama.cpp from source; several minutes)…", site.display());
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(site)
            .arg("llama-cpp-python")
            .env("CMAKE_ARGS", "-DGGML_NATIVE=ON -DGGML_OPENMP=OFF")
            .status()
            .context("running pip")?;
        anyhow::ensure!(status.success(), "pip install llama-cpp-python failed");
    }
    Ok(())
}

/// `site` ahead of the inherited PYTHONPATH, so dependencies installed elsewhere (diskcache beside
/// a separate build) still resolve.
fn python_path(site: &Path) -> std::ffi::OsString {
    let inherited = std::env::var_os("PYTHONPATH").unwrap_or_default();
    let paths = std::iter::once(site.to_path_buf()).chain(std::env::split_paths(&inherited));
    std::env::join_paths(paths).unwrap_or_else(|_| site.as_os_str().to_owned())
}

/// llama.cpp through llama-cpp-python at `threads` threads (prefill and decode), on the same
/// prompt as the other engines.
pub fn bench_llama_cpp(python: &LlamaCppPython, cache: &Path, label: &str, gguf: LlamaGguf, prompt: &str, cfg: &BenchConfig, threads: u32) -> Result<Figures> {
    let site = python.site()?;
    let (gguf_args, quant) = match gguf {
        LlamaGguf::AsIs(path) => (vec![path.display().to_string()], label.to_string()),
        LlamaGguf::Requantized { source, quant } => (vec![source.display().to_string(), "--quant".into(), quant.into()], quant.to_string()),
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_llama_cpp.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--gguf")
        .args(&gguf_args)
        .args(["--cache", &cache.display().to_string()])
        .args(["--prompt", prompt, "--decode", &cfg.decode_tokens.to_string(), "--runs", &cfg.runs.to_string(), "--threads", &threads.to_string()])
        .env("PYTHONPATH", python_path(site))
        .output()
        .context("running bench_llama_cpp.py")?;
    anyhow::ensure!(out.status.success(), "llama.cpp benchmark failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing llama.cpp figures")?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(Figures {
        label: label.into(),
        engine: llama_cpp_engine(threads),
        package: v["gguf"].as_str().unwrap_or_default().to_string(),
        quant,
        load_ms: f("load_ms"),
        copy_ms: f64::NAN,
        stream_ms: f64::NAN,
        stream_tail_ms: f64::NAN,
        prefill_tokens: v["prompt_tokens"].as_u64().unwrap_or(0) as usize,
        prefill_tokens_per_s: f("prefill_tokens_per_s"),
        decode_tokens: cfg.decode_tokens,
        decode_tokens_per_s: f("decode_tokens_per_s"),
        peak_memory_bytes: 0,
        package_bytes: 0,
        kv_cache_bytes: 0,
        runs: cfg.runs,
        threads,
        schema_decode_ratio: None,
    })
}

/// `LABEL=PACKAGE` or `LABEL=PACKAGE=GGUF` (`trl bench --extra`).
pub fn parse_extra(spec: &str) -> Result<(String, PathBuf, Option<PathBuf>)> {
    let parts: Vec<&str> = spec.split('=').collect();
    match parts[..] {
        [label, package] if !label.is_empty() && !package.is_empty() => Ok((label.into(), package.into(), None)),
        [label, package, gguf] if !label.is_empty() && !package.is_empty() && !gguf.is_empty() => Ok((label.into(), package.into(), Some(gguf.into()))),
        _ => bail!("--extra {spec:?}: expected LABEL=PACKAGE or LABEL=PACKAGE=GGUF"),
    }
}

pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

pub fn markdown(report: &Report) -> String {
    let mut s = format!(
        "Machine: {}. Module: {} bytes. Medians of {} runs; prefill {} tokens, decode {} tokens.\n\n",
        report.machine,
        report.module_bytes,
        report.results.first().map_or(0, |r| r.runs),
        report.results.first().map_or(0, |r| r.prefill_tokens),
        report.results.first().map_or(0, |r| r.decode_tokens)
    );
    s.push_str("| storage | engine | threads | load ms (copy ms) | prefill tok/s | decode tok/s | peak memory MB |\n|---|---|---|---|---|---|---|\n");
    for r in &report.results {
        let copy = if r.copy_ms.is_nan() { String::new() } else { format!(" ({:.0})", r.copy_ms) };
        let mem = if r.peak_memory_bytes == 0 { "–".to_string() } else { format!("{:.0}", r.peak_memory_bytes as f64 / 1048576.0) };
        s.push_str(&format!(
            "| {} | {} | {} | {:.0}{} | {:.1} | {:.1} | {} |\n",
            r.label, r.engine, r.threads, r.load_ms, copy, r.prefill_tokens_per_s, r.decode_tokens_per_s, mem
        ));
    }
    // Ratios against llama.cpp at the same thread count where both were measured in this run.
    let mut ratios = String::new();
    for w in report.results.iter().filter(|r| r.engine.starts_with("tinyrustlm wasm")) {
        let llama = report.results.iter().find(|r| r.engine.starts_with("llama.cpp") && r.label == w.label && r.threads == w.threads);
        let against_llama = |ours: f64, theirs: Option<f64>| theirs.map_or("–".to_string(), |t| format!("{:.2}", ours / t));
        ratios.push_str(&format!(
            "| {}{} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {} |\n",
            w.label,
            match w.engine.as_str() {
                WASM_RELAXED_ENGINE => " (relaxed SIMD)",
                WASM_SCHEMA_ENGINE => " (JSON schema)",
                WASM_ENGINE => "",
                _ => " (threaded module)",
            },
            w.threads,
            against_llama(w.decode_tokens_per_s, llama.map(|l| l.decode_tokens_per_s)),
            against_llama(w.prefill_tokens_per_s, llama.map(|l| l.prefill_tokens_per_s)),
            w.load_ms / w.copy_ms,
            w.stream_ms / w.copy_ms,
            w.stream_tail_ms,
            memory_ratio(w),
        ));
    }
    if !ratios.is_empty() {
        s.push_str(
            "\n| storage | threads | decode ours ÷ llama.cpp | prefill ours ÷ llama.cpp | load ÷ copy | streamed load ÷ copy | ms left after the last streamed MiB | peak memory ÷ (package + KV cache) |\n|---|---|---|---|---|---|---|---|\n",
        );
        s.push_str(&ratios);
    }
    // Scaling: each multi-thread row against the same engine's 1-thread row of the same run.
    let mut scaling = String::new();
    for r in report.results.iter().filter(|r| r.threads > 1) {
        let base_engine = if r.engine.starts_with("llama.cpp") { llama_cpp_engine(1) } else { wasm_threads_engine(1) };
        if let Some(one) = report.results.iter().find(|o| o.label == r.label && o.engine == base_engine) {
            scaling.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} |\n",
                r.label,
                if r.engine.starts_with("llama.cpp") { "llama.cpp" } else { "ours (threaded module)" },
                r.threads,
                r.decode_tokens_per_s / one.decode_tokens_per_s,
                r.prefill_tokens_per_s / one.prefill_tokens_per_s
            ));
        }
    }
    // The cost of a JSON Schema: decode with it ÷ without, measured in pairs (same instance, back to
    // back), so the ratio is the median of the pairs' ratios, not a ratio of two medians.
    let mut schema = String::new();
    for r in report.results.iter().filter(|r| r.engine == WASM_SCHEMA_ENGINE) {
        if let Some(ratio) = r.schema_decode_ratio {
            schema.push_str(&format!("| {} | {:.1} | {:.2} |\n", r.label, r.decode_tokens_per_s, ratio));
        }
    }
    if !schema.is_empty() {
        s.push_str("\n| storage | decode tok/s with the JSON schema | ÷ without it (median of paired runs) |\n|---|---|---|\n");
        s.push_str(&schema);
    }
    if !scaling.is_empty() {
        s.push_str("\n| storage | engine | threads | decode ÷ 1 thread | prefill ÷ 1 thread |\n|---|---|---|---|---|\n");
        s.push_str(&scaling);
    }
    if !report.sessions.is_empty() {
        s.push_str(
            "\n| model | conversation tokens | first token from scratch ms | from a snapshot ms (restore ms) | speed-up | snapshot MB | save ms |\n|---|---|---|---|---|---|---|\n",
        );
        for r in &report.sessions {
            s.push_str(&format!(
                "| {}{} | {} + {} | {:.0} | {:.0} ({:.0}) | {:.1}× | {:.1} | {:.0} |\n",
                r.label,
                if r.kv_f16 { " (f16 KV)" } else { "" },
                r.conversation_tokens,
                r.turn_tokens,
                r.from_scratch_ms,
                r.from_snapshot_ms,
                r.restore_ms,
                r.from_scratch_ms / r.from_snapshot_ms,
                r.snapshot_bytes as f64 / 1e6,
                r.save_ms
            ));
        }
    }
    s
}

/// Peak linear memory over what the model must hold (the package and the KV cache), "–" when
/// either is unknown.
fn memory_ratio(r: &Figures) -> String {
    let floor = r.package_bytes + r.kv_cache_bytes;
    if r.peak_memory_bytes == 0 || floor == 0 {
        return "–".into();
    }
    format!("{:.2}", r.peak_memory_bytes as f64 / floor as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, engine: &str, prefill: f64, decode: f64) -> Figures {
        Figures {
            label: label.into(),
            engine: engine.into(),
            package: String::new(),
            quant: String::new(),
            load_ms: 20.0,
            copy_ms: 10.0,
            stream_ms: 12.0,
            stream_tail_ms: 1.0,
            prefill_tokens: 32,
            prefill_tokens_per_s: prefill,
            decode_tokens: 16,
            decode_tokens_per_s: decode,
            peak_memory_bytes: 0,
            package_bytes: 0,
            kv_cache_bytes: 0,
            runs: 1,
            threads: 1,
            schema_decode_ratio: None,
        }
    }

    #[test]
    fn extra_specs_parse_with_and_without_a_gguf() {
        let (label, package, gguf) = parse_extra("qwen 0.5b=a.slm=b.gguf").unwrap();
        assert_eq!((label.as_str(), package, gguf), ("qwen 0.5b", PathBuf::from("a.slm"), Some(PathBuf::from("b.gguf"))));
        assert_eq!(parse_extra("x=a.slm").unwrap().2, None);
        for bad in ["x", "=a.slm", "x=", "x=a.slm=", "x=a=b=c"] {
            assert!(parse_extra(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ratios_pair_rows_by_label_and_hold_memory_against_package_plus_kv() {
        let mut ours = row("qwen q4_k_m", WASM_ENGINE, 50.0, 30.0);
        ours.peak_memory_bytes = 1100;
        ours.package_bytes = 900;
        ours.kv_cache_bytes = 100;
        let results = vec![
            ours,
            row("smol q4_k_m", "llama.cpp native (1 thread)", 1000.0, 1000.0),
            row("qwen q4_k_m", "llama.cpp native (1 thread)", 200.0, 40.0),
            row("smol q4_k_m", WASM_ENGINE, 10.0, 10.0),
        ];
        let md = markdown(&Report { machine: "m".into(), module_bytes: 1, results, sessions: Vec::new() });
        assert!(md.contains("| qwen q4_k_m | 1 | 0.75 | 0.25 | 2.00 | 1.20 | 1 | 1.10 |"), "{md}");
        // No package size known: the memory ratio is left blank rather than invented.
        assert!(md.contains("| smol q4_k_m | 1 | 0.01 | 0.01 | 2.00 | 1.20 | 1 | – |"), "{md}");
    }

    #[test]
    fn a_wasm_row_without_llama_cpp_still_gets_its_memory_ratio() {
        let mut ours = row("solo", WASM_ENGINE, 1.0, 1.0);
        ours.peak_memory_bytes = 300;
        ours.package_bytes = 200;
        ours.kv_cache_bytes = 100;
        let md = markdown(&Report { machine: "m".into(), module_bytes: 1, results: vec![ours], sessions: Vec::new() });
        assert!(md.contains("| solo | 1 | – | – | 2.00 | 1.20 | 1 | 1.00 |"), "{md}");
    }

    #[test]
    fn thread_rows_pair_with_the_same_thread_count_and_scale_against_one_thread() {
        let at = |threads: u32, r: Figures| Figures { threads, ..r };
        let results = vec![
            at(1, row("q8_0", &wasm_threads_engine(1), 100.0, 20.0)),
            at(2, row("q8_0", &wasm_threads_engine(2), 190.0, 36.0)),
            at(1, row("q8_0", &llama_cpp_engine(1), 200.0, 40.0)),
            at(2, row("q8_0", &llama_cpp_engine(2), 400.0, 60.0)),
        ];
        let md = markdown(&Report { machine: "m".into(), module_bytes: 1, results, sessions: Vec::new() });
        assert!(md.contains("| q8_0 (threaded module) | 2 | 0.60 | 0.47 |"), "{md}");
        assert!(md.contains("| q8_0 (threaded module) | 1 | 0.50 | 0.50 |"), "{md}");
        assert!(md.contains("| q8_0 | ours (threaded module) | 2 | 1.80 | 1.90 |"), "{md}");
        assert!(md.contains("| q8_0 | llama.cpp | 2 | 1.50 | 2.00 |"), "{md}");
    }
}
