//! `trl`: pack, inspect, tokenize, generate and chat with TinyRustLM packages.
//! Generation always runs inside the WebAssembly module (wasmtime), never natively.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::runtime::{ModuleFile, Runtime, Sampling, GEN_CONTINUE, GEN_PARSE_SPECIAL};
use harness::{import, package, synth};
use serde_json::json;
use tinyrustlm::quant::DType;
use tinyrustlm::tokenizer::chat::{self, ChatMessage, CHAT_ADD_GENERATION_PROMPT, CHAT_CONTINUE};
use tinyrustlm::tokenizer::ChatTemplate;

#[derive(Parser)]
#[command(name = "trl", version, about = "TinyRustLM: run small language models in WebAssembly")]
struct Cli {
    /// The TinyRustLM module to run (default: the release build of this checkout).
    #[arg(long, global = true)]
    wasm: Option<PathBuf>,
    /// Threads sharing the work of generate, chat, perplexity and tokenize (default: the machine's
    /// cores; more than 1 runs the threaded module, same tokens as 1).
    #[arg(long, global = true)]
    threads: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write an SLM1 package from a GGUF file, a llama2.c checkpoint, or random weights.
    Pack(PackArgs),
    /// Show a package's header, identity, tokenizer and tensors (validated by the runtime's parser).
    Inspect {
        package: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the token ids of a text.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
        /// Treat `<|im_start|>`-style special tokens in the text as plain text.
        #[arg(long)]
        no_special: bool,
        #[arg(long)]
        json: bool,
    },
    /// Generate text from a prompt.
    Generate(GenerateArgs),
    /// Score a text token by token and print its perplexity, exp(mean negative log-likelihood).
    ///
    /// The text is tokenized as the model's tokenizer does (BOS added when the model adds one,
    /// special-token text such as <|im_end|> read as plain text); every token after the first is
    /// scored given all tokens before it (natural log). A text longer than the context is scored in
    /// windows of the context length starting every context/2 tokens: each window after the first
    /// scores only the tokens the previous one did not reach, with the window's earlier tokens as
    /// context (at least context/2 of them; no BOS mid-text). --json prints
    /// {"tokens": [...], "argmax": [...], "nll": [...], "perplexity": x}: all tokens, BOS included;
    /// argmax[i] = the most likely token after tokens[0..=i]; nll[i] = -ln P(tokens[i+1]).
    Perplexity(PerplexityArgs),
    /// Measure load, prefill and decode speed (wasm, native, optionally llama.cpp) side by side.
    Bench(BenchArgs),
    /// Build, inspect and merge adapter deltas (ADP1 dense, ASP1 sparse, ALR1 low-rank).
    Adapter(harness::adapter::cli::AdapterArgs),
    /// Run an eval case file in the module and write its sidecar (abi/FORMAT.md "Eval cases").
    Eval(harness::evidence::EvalArgs),
    /// Build or verify a release packet (parent + adapters + eval evidence).
    Packet(harness::evidence::PacketArgs),
    /// Show the descendant DAG of a folder of release packets, or how to reassemble an ancestor.
    Lineage(harness::evidence::LineageArgs),
    /// Make an adapter that teaches eval cases their answer's first token (an LM-head edit that
    /// leaves the logits of every state the other cases visit unchanged).
    Teach(harness::examples::TeachArgs),
    /// Write the no-download evidence example (parent, adapters, evals, sidecars, packets, lineage)
    /// into DIR, or with --check report every file that differs from a fresh generation.
    Examples {
        #[arg(default_value = "examples")]
        dir: PathBuf,
        #[arg(long)]
        check: bool,
    },
    /// Interactive chat in the package's chat template (ChatML, Gemma), streaming the answers.
    Chat {
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// System prompt (default: the template's own, SmolLM2's or Qwen's; Gemma's has none).
        #[arg(long)]
        system: Option<String>,
        /// Maximum tokens per answer.
        #[arg(short = 'n', long, default_value_t = 256)]
        max_tokens: u32,
        #[arg(long, default_value_t = 0)]
        context: u32,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// Folder with smollm2-135m-{quant}.slm packages (from `make model`).
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Storage modes to measure (those whose package exists). llama.cpp runs the shipped Q4_1 GGUF
    /// requantized to each by its own quantizer (q4_k_m: the package `make bench` packs from that).
    #[arg(long, value_delimiter = ',', default_value = "f32,q8_0,q4_0,q4_1,q4_k_m")]
    quant: Vec<String>,
    /// Another model to measure after the SmolLM2 sweep, as `LABEL=PACKAGE` or
    /// `LABEL=PACKAGE=GGUF` (llama.cpp runs the GGUF as given). Repeatable; a model whose package
    /// is missing is skipped with a note.
    #[arg(long, value_name = "LABEL=PACKAGE[=GGUF]")]
    extra: Vec<String>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    /// Load with the KV cache in f16 (the wasm engine only; peak memory shows the saving).
    #[arg(long)]
    kv_f16: bool,
    /// Also measure llama.cpp (installs llama-cpp-python into --cache on first use).
    #[arg(long)]
    llama_cpp: bool,
    /// Skip the native build of the runtime.
    #[arg(long)]
    no_native: bool,
    /// Also measure this relaxed-SIMD build of the module (`make wasm-relaxed`), run after the
    /// default one on the same package.
    #[arg(long)]
    wasm_relaxed: Option<PathBuf>,
    /// The threaded module (`make wasm-threads`): adds rows at each of --thread-counts, and
    /// llama.cpp rows at the same counts.
    #[arg(long)]
    wasm_threads: Option<PathBuf>,
    /// Also decode every package under this JSON Schema (the cost of constrained output).
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// Thread counts for the threaded module and llama.cpp (with --wasm-threads).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    thread_counts: Vec<u32>,
    #[arg(long, default_value = ".cache")]
    cache: PathBuf,
    /// An existing llama-cpp-python (a folder holding `llama_cpp/`, put on PYTHONPATH; default
    /// $TRL_LLAMA_CPP_PYTHON, else CACHE/llama-cpp-python, installed there on first use). Its shared
    /// libraries may live elsewhere: set LLAMA_CPP_LIB_PATH, which the script inherits (as it does
    /// PYTHONPATH, after DIR, for dependencies kept apart).
    #[arg(long, value_name = "DIR")]
    llama_cpp_python: Option<PathBuf>,
    /// Where to write results.json and results.md.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Time to first token of a conversation of this many tokens restored from a session snapshot
    /// vs prefilled again (SmolLM2 q8_0 when --quant has it, and every --extra model; 0 = skip).
    #[arg(long, default_value_t = 1000)]
    session_tokens: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Quant {
    F32,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_1")]
    Q4_1,
}

impl From<Quant> for DType {
    fn from(q: Quant) -> DType {
        match q {
            Quant::F32 => DType::F32,
            Quant::Q8_0 => DType::Q8_0,
            Quant::Q4_0 => DType::Q4_0,
            Quant::Q4_1 => DType::Q4_1,
        }
    }
}

#[derive(Args)]
struct PackArgs {
    /// GGUF input (llama or qwen2 architecture); tensors keep their shipped dtypes unless --quant.
    #[arg(long, conflicts_with_all = ["llama2c", "synthetic"])]
    gguf: Option<PathBuf>,
    /// llama2.c checkpoint (`.bin`, legacy v0 header); needs --tokenizer.
    #[arg(long, requires = "tokenizer")]
    llama2c: Option<PathBuf>,
    /// llama2.c `tokenizer.bin`.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Random weights with a byte tokenizer (for tests and demos).
    #[arg(long)]
    synthetic: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 64)]
    dim: u32,
    #[arg(long, default_value_t = 2)]
    layers: u32,
    #[arg(long, default_value_t = 4)]
    heads: u32,
    #[arg(long, default_value_t = 2)]
    kv_heads: u32,
    #[arg(long, default_value_t = 96)]
    ffn: u32,
    /// Convert every matrix to this storage (norms stay f32). Default: a GGUF's tensors as shipped
    /// (SLM1 v2 when they mix dtypes), q8_0 for --llama2c and --synthetic.
    #[arg(long, value_enum)]
    quant: Option<Quant>,
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(Args, Clone)]
struct SamplingArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    repeat_window: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    fn to_sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            repetition_window: self.repeat_window,
            seed: self.seed,
        }
    }
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(short = 'n', long, default_value_t = 64)]
    max_tokens: u32,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Wrap the prompt as a user message in the package's chat template (without it the prompt is
    /// raw text to complete, as for a base model such as Gemma 3 270M).
    #[arg(long)]
    chat: bool,
    /// System prompt for --chat (default: the template's own, if it has one).
    #[arg(long)]
    system: Option<String>,
    /// Stop when this text appears (repeatable, at most 8).
    #[arg(long)]
    stop: Vec<String>,
    /// Treat special-token text in the prompt as plain text.
    #[arg(long)]
    no_special: bool,
    /// Context length (0 = the runtime's default).
    #[arg(long, default_value_t = 0)]
    context: u32,
    /// Keep the KV cache in f16 (half its memory).
    #[arg(long)]
    kv_f16: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Apply this adapter after loading (repeatable: applied in order).
    #[arg(long)]
    adapter: Vec<PathBuf>,
    /// Constrain the output to this GBNF grammar (README "Structured output").
    #[arg(long, conflicts_with = "json_schema")]
    grammar: Option<PathBuf>,
    /// Constrain the output to JSON valid against this JSON Schema (the supported subset).
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// Continue the conversation saved in this session snapshot (SES1, `--save-session`): the
    /// prompt extends it (with --chat, as the next user turn) instead of starting anew. The model,
    /// adapters and --kv-f16 must be those it was saved with; --context may differ if it holds it.
    #[arg(long)]
    load_session: Option<PathBuf>,
    /// After the generation, save the conversation (tokens and KV cache) to this file.
    #[arg(long)]
    save_session: Option<PathBuf>,
}

#[derive(Args)]
struct PerplexityArgs {
    #[arg(long)]
    model: PathBuf,
    /// The text to score (UTF-8).
    #[arg(long)]
    file: PathBuf,
    /// Print one JSON object: tokens, argmax, nll, perplexity.
    #[arg(long)]
    json: bool,
    /// Context length, and so the window length (0 = the runtime's default, min(max_context, 2048)).
    #[arg(long, default_value_t = 0)]
    context: u32,
}

fn perplexity(host: &Host, a: &PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let mut rt = open_runtime(host, &a.model, a.context, false)?;
    let t0 = std::time::Instant::now();
    let p = harness::perplexity::score_text(&mut rt, &text)?;
    if a.json {
        println!("{}", p.to_json());
    } else {
        let agree = p.argmax.iter().zip(&p.tokens[1..]).filter(|(a, t)| a == t).count();
        println!("perplexity {:.4} over {} scored tokens ({} tokens, BOS included)", p.perplexity, p.nll.len(), p.tokens.len());
        eprintln!("[argmax = next token at {agree} of {} positions; {:.1} s]", p.nll.len(), t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// One user turn in the loaded package's chat template, ready for the answer, rendered by the
/// runtime's renderer; `flags` may add `CHAT_CONTINUE`.
fn chat_user_turn(template: ChatTemplate, user: &str, default_system: Option<&str>, flags: u32) -> Result<String> {
    let turn = [ChatMessage { role: "user", content: user }];
    let bytes = chat::render(template, &turn, default_system, flags | CHAT_ADD_GENERATION_PROMPT).map_err(|e| anyhow!("{e}"))?;
    Ok(String::from_utf8(bytes)?)
}

/// The loaded package's chat template (diagnostics `chat_template`) and the system prompt a new
/// conversation starts with: `system` when given, else the template's family default (SmolLM2's
/// or Qwen's; Gemma's template has none).
fn package_chat(rt: &mut Runtime, system: &Option<String>) -> Result<(ChatTemplate, Option<String>)> {
    let code = rt.diagnostics()?.chat_template;
    let template = ChatTemplate::from_code(code).ok_or_else(|| anyhow!("the package's chat_template is {code}, which this trl does not know"))?;
    if template == ChatTemplate::None {
        bail!("this model's package names no chat template; drop --chat");
    }
    Ok((template, system.clone().or_else(|| template.default_system().map(String::from))))
}

/// Bytes `trl` reads from a package file and hands to one `load_append`.
const STREAM_CHUNK: usize = 1 << 20;

/// The module a command runs (`--wasm`) and its thread count (`--threads`).
struct Host {
    wasm: Option<PathBuf>,
    threads: Option<u32>,
}

fn open_runtime(host: &Host, model: &Path, context: u32, kv_f16: bool) -> Result<Runtime> {
    let (file, threads) = harness::open_module(&host.wasm, host.threads)?;
    let mut rt = Runtime::with_threads(&file, threads, None)?;
    let mut file = std::fs::File::open(model).with_context(|| format!("opening {}", model.display()))?;
    let len = file.metadata().with_context(|| format!("reading {}", model.display()))?.len();
    let flags = if kv_f16 { harness::runtime::LOAD_KV_F16 } else { 0 };
    // Streamed: the file is read in chunks that the module verifies while the next one is read,
    // and the package is never held twice (not in this process, not in the module).
    rt.load_model_streaming(&mut file, len, STREAM_CHUNK, context, flags).with_context(|| format!("loading {}", model.display()))?;
    Ok(rt)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let host = Host { wasm: cli.wasm.clone(), threads: cli.threads };
    match &cli.command {
        Command::Pack(a) => pack(a),
        Command::Inspect { package, json } => inspect(package, *json),
        Command::Tokenize { model, text, no_special, json } => {
            let mut rt = open_runtime(&host, model, 0, false)?;
            let ids = rt.tokenize(text, !no_special)?;
            // Bytes no token covers are dropped (or the unknown token): never silently.
            let unencodable = rt.diagnostics()?.unencodable_bytes;
            if *json {
                println!("{}", json!({ "tokens": ids, "unencodable_bytes": unencodable }));
            } else {
                println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
                if unencodable > 0 {
                    eprintln!("[{unencodable} input byte(s) have no token in this vocabulary: the ids do not decode back to the text]");
                }
            }
            Ok(())
        }
        Command::Generate(a) => generate(&host, a),
        Command::Perplexity(a) => perplexity(&host, a),
        Command::Bench(a) => bench(&cli.wasm, a),
        Command::Adapter(a) => harness::adapter::cli::run(a),
        Command::Eval(a) => harness::evidence::eval(&cli.wasm, a),
        Command::Packet(a) => harness::evidence::packet(&cli.wasm, a),
        Command::Lineage(a) => harness::evidence::lineage(a),
        Command::Teach(a) => harness::examples::teach(&cli.wasm, a),
        Command::Examples { dir, check } => examples(&cli.wasm, dir, *check),
        Command::Chat { model, sampling, system, max_tokens, context } => chat(&host, model, sampling, system, *max_tokens, *context),
    }
}

fn pack(a: &PackArgs) -> Result<()> {
    let progress = indicatif::ProgressBar::new(0);
    progress.set_style(indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {msg}").unwrap().progress_chars("=> "));
    let spec = if let Some(gguf) = &a.gguf {
        progress.set_prefix("reading");
        import::import_gguf(gguf, true)?
    } else if let Some(bin) = &a.llama2c {
        import::import_llama2c(bin, a.tokenizer.as_ref().unwrap(), true)?
    } else if a.synthetic {
        let shape = synth::SynthShape {
            dim: a.dim,
            n_layers: a.layers,
            n_heads: a.heads,
            n_kv_heads: a.kv_heads,
            ffn_dim: a.ffn,
            max_context: 256,
            tied_embeddings: true,
        };
        synth::synthetic_model(&shape, a.seed)
    } else {
        bail!("give one of --gguf, --llama2c or --synthetic");
    };
    // A GGUF keeps its shipped dtypes unless --quant asks for one; the other sources hold f32
    // values, which default to q8_0 as before.
    let quant: Option<DType> = match a.quant {
        Some(q) => Some(q.into()),
        None if a.gguf.is_some() => None,
        None => Some(DType::Q8_0),
    };
    progress.set_prefix(format!("packing {}", quant.map_or("as shipped", DType::name)));
    progress.set_length(package::canonical_names(&spec.hparams).len() as u64);
    let on_tensor = |name: &str| {
        progress.set_message(name.to_string());
        progress.inc(1);
    };
    let raw = match quant {
        Some(q) => package::build(&spec, q, on_tensor)?,
        None => package::build_as_shipped(&spec, on_tensor)?,
    };
    progress.finish_and_clear();
    let (bytes, _) = raw.to_bytes();
    let tmp = a.out.with_extension("slm.partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.out)?;
    let mode = DType::ALL.into_iter().find(|d| d.code() as u32 == raw.quant_mode).map_or("?", DType::name);
    eprintln!("wrote {} ({} bytes, {} params, SLM1 v{}, quant_mode {mode})", a.out.display(), bytes.len(), raw.n_params, raw.format_version);
    Ok(())
}

fn inspect(path: &Path, as_json: bool) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let pkg = tinyrustlm::format::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e))?;
    let tok = tinyrustlm::tokenizer::Tokenizer::parse(&bytes[pkg.tokenizer_range.clone()], pkg.hparams.vocab_size)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e))?;
    let h = pkg.hparams;
    let id = pkg.identity;
    let tensors: Vec<_> = pkg
        .tensors
        .iter()
        .map(|t| json!({ "name": t.name, "dtype": t.dtype.name(), "dims": if t.rank == 1 { vec![t.row_len] } else { vec![t.rows, t.row_len] }, "offset": t.range.start, "bytes": t.range.len() }))
        .collect();
    let v = json!({
        "file": path.display().to_string(),
        "bytes": bytes.len(),
        "format_version": pkg.format_version,
        "hparams": { "arch": h.arch.name(), "rope": format!("{:?}", h.rope), "qkv_bias": h.qkv_bias, "vocab_size": h.vocab_size, "dim": h.dim, "n_layers": h.n_layers, "n_heads": h.n_heads, "n_kv_heads": h.n_kv_heads,
                     "head_dim": h.head_dim(), "ffn_dim": h.ffn_dim, "max_context": h.max_context, "rope_theta": h.rope_theta, "norm_eps": h.norm_eps,
                     "tied_embeddings": h.tied_embeddings },
        "quant_mode": pkg.quant.name(),
        "identity": { "n_params": id.n_params, "tensor_layout_crc": format!("{:08x}", id.tensor_layout_crc), "tokenizer_crc": format!("{:08x}", id.tokenizer_crc),
                      "flags": id.flags, "n_tensors": id.n_tensors },
        "artifact_crc": format!("{:08x}", pkg.artifact_crc),
        "tokenizer": { "kind": format!("{:?}", tok.kind()), "n_tokens": tok.n_tokens(), "n_merges": tok.n_merges(), "bos_id": tok.bos_id(), "eos_id": tok.eos_id(),
                       "eog_ids": tok.eog_ids(), "chat_template": format!("{:?}", tok.chat_template()) },
        "tensors": tensors,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut by_dtype: Vec<(&str, usize)> = Vec::new();
    for t in &pkg.tensors {
        match by_dtype.iter_mut().find(|(n, _)| *n == t.dtype.name()) {
            Some((_, c)) => *c += 1,
            None => by_dtype.push((t.dtype.name(), 1)),
        }
    }
    let mix: Vec<String> = by_dtype.iter().map(|(n, c)| format!("{c} {n}")).collect();
    println!("{}  ({} bytes, SLM1 v{}, {} storage; tensors: {})", path.display(), bytes.len(), pkg.format_version, pkg.quant.name(), mix.join(", "));
    println!(
        "  {}: vocab {} · dim {} · layers {} · heads {}/{} (head_dim {}) · ffn {} · context {} · rope {:?} θ {} · eps {} · {}{}",
        h.arch.name(),
        h.vocab_size,
        h.dim,
        h.n_layers,
        h.n_heads,
        h.n_kv_heads,
        h.head_dim(),
        h.ffn_dim,
        h.max_context,
        h.rope,
        h.rope_theta,
        h.norm_eps,
        if h.tied_embeddings { "tied embeddings" } else { "separate LM head" },
        if h.qkv_bias { " · Q/K/V biases" } else { "" }
    );
    println!(
        "  identity: params {} · tensor layout crc {:08x} · tokenizer crc {:08x} · flags {} · tensors {}",
        id.n_params, id.tensor_layout_crc, id.tokenizer_crc, id.flags, id.n_tensors
    );
    println!("  artifact crc {:08x}", pkg.artifact_crc);
    println!(
        "  tokenizer: {:?}, {} tokens, {} merges, bos {:?}, eos {:?}, end of generation {:?}, chat {:?}",
        tok.kind(),
        tok.n_tokens(),
        tok.n_merges(),
        tok.bos_id(),
        tok.eos_id(),
        tok.eog_ids(),
        tok.chat_template()
    );
    println!("  tensors:");
    for t in &pkg.tensors {
        let dims = if t.rank == 1 { format!("[{}]", t.row_len) } else { format!("[{}, {}]", t.rows, t.row_len) };
        println!("    {:<28} {:<5} {:<14} @{:<10} {} bytes", t.name, t.dtype.name(), dims, t.range.start, t.range.len());
    }
    Ok(())
}

fn generate(host: &Host, a: &GenerateArgs) -> Result<()> {
    let mut rt = open_runtime(host, &a.model, a.context, a.kv_f16)?;
    for path in &a.adapter {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let t0 = std::time::Instant::now();
        rt.apply_adapter(&bytes).with_context(|| format!("applying {}", path.display()))?;
        let d = rt.diagnostics()?;
        eprintln!(
            "[applied {} in {:.1} ms: {} adapter(s), assembly state {:08x}]",
            path.display(),
            t0.elapsed().as_secs_f64() * 1e3,
            d.adapters_applied,
            d.assembly_state_crc
        );
    }
    rt.set_sampling(&a.sampling.to_sampling())?;
    for s in &a.stop {
        rt.add_stop_string(s)?;
    }
    let constrained = a.grammar.as_ref().map(|p| (p, false)).or(a.json_schema.as_ref().map(|p| (p, true)));
    if let Some((path, schema)) = constrained {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        rt.set_grammar(&bytes, schema).with_context(|| format!("compiling {}", path.display()))?;
    }
    if let Some(path) = &a.load_session {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let t0 = std::time::Instant::now();
        rt.restore_session(&bytes).with_context(|| format!("restoring {}", path.display()))?;
        let d = rt.diagnostics()?;
        eprintln!("[restored {} positions from {} ({} bytes) in {:.1} ms]", d.kv_len, path.display(), bytes.len(), t0.elapsed().as_secs_f64() * 1e3);
    }
    let continuing = a.load_session.is_some();
    let prompt = if a.chat {
        let (template, system) = package_chat(&mut rt, &a.system)?;
        if continuing {
            // The saved conversation has its system prompt; render only the next user turn.
            chat_user_turn(template, &a.prompt, None, CHAT_CONTINUE)?
        } else {
            chat_user_turn(template, &a.prompt, system.as_deref(), 0)?
        }
    } else {
        a.prompt.clone()
    };
    let flags = (if a.no_special { 0 } else { GEN_PARSE_SPECIAL }) | if continuing { GEN_CONTINUE } else { 0 };
    let out = std::io::stdout();
    let generation = if a.json {
        rt.generate_all(&prompt, a.max_tokens, flags)?
    } else {
        let g = rt.generate_streaming(&prompt, a.max_tokens, flags, |chunk| {
            let mut o = out.lock();
            let _ = o.write_all(chunk.as_bytes());
            let _ = o.flush();
        })?;
        println!();
        g
    };
    let diag = rt.diagnostics()?;
    let stats = rt.grammar_stats()?;
    if let Some(path) = &a.save_session {
        let t0 = std::time::Instant::now();
        let bytes = rt.save_session()?;
        std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("[saved {} positions to {} ({} bytes) in {:.1} ms]", diag.kv_len, path.display(), bytes.len(), t0.elapsed().as_secs_f64() * 1e3);
    }
    let stop = tinyrustlm::abi_facts::StopReason::from_code(generation.state.stop_reason).map_or("?", |r| r.name());
    if a.json {
        println!(
            "{}",
            json!({ "prompt_tokens": generation.prompt_tokens, "tokens": generation.tokens, "text": generation.text,
                    "stop_reason": generation.state.stop_reason, "stop": stop, "diagnostics": diag,
                    "grammar": if stats.constrained { json!(stats) } else { json!(null) } })
        );
    } else {
        eprintln!(
            "[{} prompt tokens, {} generated; prefill {:.1} tok/s, decode {:.1} tok/s; stop {stop}]",
            diag.prompt_tokens, diag.generated_tokens, diag.prefill_tokens_per_s, diag.decode_tokens_per_s
        );
        if stats.constrained {
            eprintln!(
                "[grammar: {} rules; masking {:.1} ms over {} steps ({:.2} ms/token), {} needing the whole mask, {} cache hits, {} masks cached; trie {} nodes built in {:.0} ms]",
                stats.grammar_rules,
                stats.mask_ms,
                stats.masked_steps,
                stats.mask_ms / stats.masked_steps.max(1) as f32,
                stats.whole_mask_steps,
                stats.mask_cache_hits,
                stats.mask_cache_entries,
                stats.trie_nodes,
                stats.trie_build_ms
            );
        }
    }
    Ok(())
}

fn chat(host: &Host, model: &Path, sampling: &SamplingArgs, system: &Option<String>, max_tokens: u32, context: u32) -> Result<()> {
    let mut rt = open_runtime(host, model, context, false)?;
    rt.set_sampling(&sampling.to_sampling())?;
    let (template, system) = package_chat(&mut rt, system)?;
    eprintln!("chat with {} — empty line or Ctrl-D to quit, /reset to start over", model.display());
    let stdin = std::io::stdin();
    let mut first = true;
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let user = line.trim_end_matches('\n');
        if user == "/reset" {
            rt.reset()?;
            first = true;
            continue;
        }
        // Later turns continue the conversation: the previous answer's end-of-turn token
        // (<|im_end|>, <end_of_turn>) is already in the context, so only what follows it is added.
        let (prompt, flags) = if first {
            (chat_user_turn(template, user, system.as_deref(), 0)?, GEN_PARSE_SPECIAL)
        } else {
            (chat_user_turn(template, user, None, CHAT_CONTINUE)?, GEN_PARSE_SPECIAL | GEN_CONTINUE)
        };
        let out = std::io::stdout();
        let result = rt.generate_streaming(&prompt, max_tokens, flags, |chunk| {
            let mut o = out.lock();
            let _ = o.write_all(chunk.as_bytes());
            let _ = o.flush();
        });
        println!();
        match result {
            Ok(_) => first = false,
            Err(e) if harness::runtime::status_of(&e) == Some(5) => {
                eprintln!("(context full: starting a new conversation)");
                rt.reset()?;
                first = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn examples(wasm: &Option<PathBuf>, dir: &Path, check: bool) -> Result<()> {
    let wasm_path = wasm.clone().unwrap_or_else(harness::default_wasm_path);
    if !wasm_path.exists() {
        bail!("module {} not found: run `make` first or pass --wasm", wasm_path.display());
    }
    let module = ModuleFile::load(&wasm_path)?;
    if check {
        let diffs = harness::examples::check(&module, dir)?;
        if !diffs.is_empty() {
            bail!("{} is stale (run `make examples`):\n  {}", dir.display(), diffs.join("\n  "));
        }
        println!("{}: up to date", dir.display());
    } else {
        harness::examples::generate(&module, dir)?;
        eprintln!("wrote {}", dir.display());
    }
    Ok(())
}

fn bench(wasm: &Option<PathBuf>, a: &BenchArgs) -> Result<()> {
    use harness::bench::*;
    let wasm_path = wasm.clone().unwrap_or_else(harness::default_wasm_path);
    let module = ModuleFile::load(&wasm_path)?;
    let relaxed = a.wasm_relaxed.as_deref().map(ModuleFile::load).transpose()?;
    let threaded = a.wasm_threads.as_deref().map(ModuleFile::load).transpose()?;
    let llama_threads: Vec<u32> = if threaded.is_some() { a.thread_counts.clone() } else { vec![1] };
    let cfg = BenchConfig {
        runs: a.runs,
        prompt_tokens: a.prompt_tokens,
        decode_tokens: a.decode_tokens,
        context: 512,
        load_flags: if a.kv_f16 { harness::runtime::LOAD_KV_F16 } else { 0 },
    };
    let schema = a.json_schema.as_ref().map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display()))).transpose()?;
    let gguf = a.models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let python = match a.llama_cpp_python.clone().or_else(|| std::env::var_os("TRL_LLAMA_CPP_PYTHON").map(PathBuf::from)) {
        Some(dir) => LlamaCppPython::Existing(dir),
        None => LlamaCppPython::InstallInto(a.cache.join("llama-cpp-python")),
    };
    let mut models = Vec::new();
    for q in &a.quant {
        let package = a.models.join(format!("smollm2-135m-{q}.slm"));
        if !package.exists() {
            let how = if q == "q4_k_m" { "make bench" } else { "make model" };
            eprintln!("skipping {q}: {} not found ({how})", package.display());
            continue;
        }
        models.push((q.clone(), package, Some(LlamaGguf::Requantized { source: &gguf, quant: q })));
    }
    let extras: Vec<(String, PathBuf, Option<PathBuf>)> = a.extra.iter().map(|e| parse_extra(e)).collect::<Result<_>>()?;
    for (label, package, extra_gguf) in &extras {
        if !package.exists() {
            eprintln!("skipping {label}: {} not found", package.display());
            continue;
        }
        let llama = match extra_gguf {
            Some(g) if g.exists() => Some(LlamaGguf::AsIs(g)),
            Some(g) => {
                if a.llama_cpp {
                    eprintln!("{label}: no llama.cpp row, {} not found", g.display());
                }
                None
            }
            None => None,
        };
        models.push((label.clone(), package.clone(), llama));
    }
    let mut results = Vec::new();
    for (label, package, llama_gguf) in models {
        let q = &label;
        eprintln!("{q}: wasm…");
        let w = bench_wasm(&module, q, WASM_ENGINE, &package, &cfg)?;
        eprintln!("  load {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s", w.load_ms, w.prefill_tokens_per_s, w.decode_tokens_per_s);
        results.push(w);
        if let Some(relaxed) = &relaxed {
            eprintln!("{q}: wasm, relaxed SIMD…");
            let r = bench_wasm(relaxed, q, WASM_RELAXED_ENGINE, &package, &cfg)?;
            eprintln!("  load {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s", r.load_ms, r.prefill_tokens_per_s, r.decode_tokens_per_s);
            results.push(r);
        }
        if let Some(schema) = &schema {
            eprintln!("{q}: wasm, JSON schema…");
            let r = bench_wasm_schema(&module, q, &package, &cfg, schema)?;
            eprintln!("  decode {:.1} tok/s, {:.2}× decoding free (paired runs)", r.decode_tokens_per_s, r.schema_decode_ratio.unwrap_or(f64::NAN));
            results.push(r);
        }
        if let Some(threaded) = &threaded {
            for &n in &a.thread_counts {
                eprintln!("{q}: wasm, threaded module, {n} thread(s)…");
                let r = bench_wasm_threads(threaded, n, q, &wasm_threads_engine(n), &package, &cfg)?;
                eprintln!("  load {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s", r.load_ms, r.prefill_tokens_per_s, r.decode_tokens_per_s);
                results.push(r);
            }
        }
        let mut rt = Runtime::new(&module)?;
        rt.load_model(&std::fs::read(&package)?, 512)?;
        let prompt = prompt_of(&mut rt, a.prompt_tokens)?;
        drop(rt);
        if !a.no_native {
            eprintln!("{q}: native…");
            let n = bench_native(q, &package, &prompt, &cfg)?;
            eprintln!("  load {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s", n.load_ms, n.prefill_tokens_per_s, n.decode_tokens_per_s);
            results.push(n);
        }
        if let (true, Some(llama_gguf)) = (a.llama_cpp, llama_gguf) {
            for &n in &llama_threads {
                eprintln!("{q}: llama.cpp, {n} thread(s)…");
                let l = bench_llama_cpp(&python, &a.cache, q, llama_gguf, &prompt, &cfg, n)?;
                eprintln!("  load {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s", l.load_ms, l.prefill_tokens_per_s, l.decode_tokens_per_s);
                results.push(l);
            }
        }
    }
    let mut sessions = Vec::new();
    if a.session_tokens > 0 {
        let q8 = a.quant.iter().any(|q| q == "q8_0").then(|| ("q8_0".to_string(), a.models.join("smollm2-135m-q8_0.slm")));
        let session_models = q8.into_iter().chain(extras.iter().map(|(l, p, _)| (l.clone(), p.clone())));
        for (label, package) in session_models.filter(|(_, p)| p.exists()) {
            eprintln!("{label}: session snapshot, {}-token conversation…", a.session_tokens);
            let r = bench_session(&module, &label, &package, a.session_tokens, a.runs, cfg.load_flags)?;
            eprintln!(
                "  first token from scratch {:.0} ms, from a snapshot {:.0} ms ({:.1} MB)",
                r.from_scratch_ms,
                r.from_snapshot_ms,
                r.snapshot_bytes as f64 / 1e6
            );
            sessions.push(r);
        }
    }
    let report = Report { machine: machine_description(), module_bytes: std::fs::metadata(&wasm_path)?.len(), results, sessions };
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(a.out.join("results.json"), serde_json::to_string_pretty(&report)?)?;
    let md = markdown(&report);
    std::fs::write(a.out.join("results.md"), &md)?;
    println!("{md}");
    eprintln!("wrote {}/results.json and results.md", a.out.display());
    Ok(())
}
