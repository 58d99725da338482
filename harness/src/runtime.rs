//! A typed wrapper over the TinyRustLM module in wasmtime: copy bytes in, call an export, read
//! structs back. Every method maps a non-zero status to an [`AbiError`] carrying the module's text.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use wasmtime::{Caller, Engine, Instance, Linker, Memory, MemoryType, Module, SharedMemory, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};

/// ABI facts as the runtime's tables define them (`tinyrustlm::abi_facts`): `read_result` kinds as
/// `result_kind::TEXT`, ..., and the `load_model` / `generate_start` flags.
pub use tinyrustlm::abi_facts::{result_kind, GEN_CONTINUE, GEN_IGNORE_EOG, GEN_PARSE_SPECIAL, LOAD_KV_F16};
use tinyrustlm::abi_facts::{FieldType, GenState, Status, DIAGNOSTICS_FIELDS, DIAGNOSTICS_LEN, IMPORT_MODULE, STACK_POINTER_GLOBAL};

/// A failed export call: the status code and the module's error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiError {
    pub status: u32,
    pub message: String,
}

impl std::fmt::Display for AbiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}: {}", self.status, self.message)
    }
}

impl std::error::Error for AbiError {}

/// Generation progress, from `read_result(STATE)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationState {
    pub state: u32,
    pub stop_reason: u32,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
}

impl GenerationState {
    pub fn running(&self) -> bool {
        self.state == GenState::Running.code()
    }
}

/// The diagnostics record (layout version 1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Diagnostics {
    pub layout_version: u32,
    pub model_loaded: bool,
    pub quant_mode: u32,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub prefill_tokens_per_s: f32,
    pub decode_tokens_per_s: f32,
    pub peak_scratch_bytes: u64,
    pub kv_len: u32,
    pub context_len: u32,
    pub adapters_applied: u32,
    pub assembly_state_crc: u32,
    pub package_bytes: u64,
    pub kv_cache_bytes: u64,
    pub n_params: u64,
    pub tensor_layout_crc: u32,
    pub tokenizer_crc: u32,
    pub linear_memory_bytes: u64,
    pub prefill_ms: f32,
    pub decode_ms: f32,
    /// 0 = f32, 1 = f16 (`LOAD_KV_F16`).
    pub kv_dtype: u32,
    pub chat_template: u32,
    pub total_generated_tokens: u64,
    pub unencodable_bytes: u32,
    /// Threads sharing the matrix products (1 + running workers).
    pub threads: u32,
}

impl Diagnostics {
    pub fn parse(b: &[u8]) -> Result<Diagnostics> {
        anyhow::ensure!(b.len() >= DIAGNOSTICS_LEN, "diagnostics record is {} bytes", b.len());
        // Offsets (and types, checked here) from the runtime's field table.
        let at = |name: &str, ty: FieldType| {
            let f = DIAGNOSTICS_FIELDS.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("the diagnostics layout has no field {name}"));
            assert_eq!(f.ty(), ty, "diagnostics field {name}");
            &b[f.offset..f.offset + ty.size()]
        };
        let u32_at = |name: &str| u32::from_le_bytes(at(name, FieldType::U32).try_into().unwrap());
        let u64_at = |name: &str| u64::from_le_bytes(at(name, FieldType::U64).try_into().unwrap());
        let f32_at = |name: &str| f32::from_le_bytes(at(name, FieldType::F32).try_into().unwrap());
        Ok(Diagnostics {
            layout_version: u32_at("layout_version"),
            model_loaded: u32_at("model_loaded") != 0,
            quant_mode: u32_at("quant_mode"),
            prompt_tokens: u32_at("prompt_tokens"),
            generated_tokens: u32_at("generated_tokens"),
            prefill_tokens_per_s: f32_at("prefill_tokens_per_s"),
            decode_tokens_per_s: f32_at("decode_tokens_per_s"),
            peak_scratch_bytes: u64_at("peak_scratch_bytes"),
            kv_len: u32_at("kv_len"),
            context_len: u32_at("context_len"),
            adapters_applied: u32_at("adapters_applied"),
            assembly_state_crc: u32_at("assembly_state_crc"),
            package_bytes: u64_at("package_bytes"),
            kv_cache_bytes: u64_at("kv_cache_bytes"),
            n_params: u64_at("n_params"),
            tensor_layout_crc: u32_at("tensor_layout_crc"),
            tokenizer_crc: u32_at("tokenizer_crc"),
            linear_memory_bytes: u64_at("linear_memory_bytes"),
            prefill_ms: f32_at("prefill_ms"),
            decode_ms: f32_at("decode_ms"),
            kv_dtype: u32_at("kv_dtype"),
            chat_template: u32_at("chat_template"),
            total_generated_tokens: u64_at("total_generated_tokens"),
            unencodable_bytes: u32_at("unencodable_bytes"),
            threads: u32_at("threads"),
        })
    }
}

struct HostState {
    start: Instant,
    limits: StoreLimits,
}

/// Compiled module, shareable between instances.
#[derive(Clone)]
pub struct ModuleFile {
    engine: Engine,
    module: Module,
}

impl ModuleFile {
    pub fn load(path: &Path) -> Result<ModuleFile> {
        let mut config = wasmtime::Config::new();
        // The threaded flavour imports a shared memory that this host creates (`abi/THREADS.md`).
        config.wasm_threads(true).shared_memory(true);
        // `TRL_PERFMAP=1` writes /tmp/perf-PID.map so `perf record` can name the module's functions
        // (build the module unstripped for names: `CARGO_PROFILE_WASM_STRIP=false`).
        if std::env::var_os("TRL_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let module = Module::from_file(&engine, path).map_err(anyhow::Error::from).with_context(|| format!("compiling {}", path.display()))?;
        Ok(ModuleFile { engine, module })
    }

    /// Import names of the module (`env.trl_now_ms`, and `env.memory` for the threaded flavour).
    pub fn imports(&self) -> Vec<String> {
        self.module.imports().map(|i| format!("{}.{}", i.module(), i.name())).collect()
    }

    pub fn exports(&self) -> Vec<String> {
        self.module.exports().map(|e| e.name().to_string()).collect()
    }

    /// The compiled module (its import and export sections, with types).
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The shared memory the threaded flavour imports (`env.memory`), or `None` for a module that
    /// owns its memory (the single-thread flavours).
    pub fn shared_memory_import(&self) -> Option<MemoryType> {
        self.module.imports().find_map(|i| match i.ty() {
            wasmtime::ExternType::Memory(m) if i.module() == IMPORT_MODULE && i.name() == "memory" && m.is_shared() => Some(m),
            _ => None,
        })
    }

    /// Whether the module can run workers (the threaded flavour).
    pub fn is_threaded(&self) -> bool {
        self.shared_memory_import().is_some()
    }
}

/// The module's linear memory: its own, or the shared one this host made for the threaded flavour.
enum LinearMemory {
    Own(Memory),
    Shared(SharedMemory),
}

/// Worker threads of a threaded instance: each runs `worker_run` on its own instance of the module
/// over the shared memory until `stop_workers`.
struct Workers {
    handles: Vec<std::thread::JoinHandle<Result<u32>>>,
}

/// One instance of the module.
pub struct Runtime {
    store: Store<HostState>,
    instance: Instance,
    memory: LinearMemory,
    workers: Option<Workers>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Workers park inside the module until told to stop; a dropped runtime must not leave them.
        if let Err(e) = self.stop_workers() {
            eprintln!("warning: stopping the module's workers: {e:#}");
        }
    }
}

fn linker(file: &ModuleFile, store: &mut Store<HostState>, shared: Option<&SharedMemory>) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(&file.engine);
    linker.func_wrap(IMPORT_MODULE, "trl_now_ms", |caller: Caller<'_, HostState>| -> f64 { caller.data().start.elapsed().as_secs_f64() * 1000.0 })?;
    if let Some(memory) = shared {
        linker.define(&mut *store, IMPORT_MODULE, "memory", memory.clone())?;
    }
    Ok(linker)
}

/// The cells `[ptr, ptr + len)` of a shared memory, or an error if they run past its end.
fn shared_range(m: &SharedMemory, ptr: u32, len: usize) -> Result<&[std::cell::UnsafeCell<u8>]> {
    let data = m.data();
    let start = ptr as usize;
    start.checked_add(len).and_then(|end| data.get(start..end)).ok_or_else(|| anyhow!("[{ptr}, +{len}) is outside the module's memory ({} bytes)", data.len()))
}

impl Runtime {
    pub fn new(file: &ModuleFile) -> Result<Runtime> {
        Self::with_memory_limit(file, None)
    }

    /// An instance whose linear memory may not grow beyond `max_bytes` (memory-exhaustion tests).
    pub fn with_memory_limit(file: &ModuleFile, max_bytes: Option<usize>) -> Result<Runtime> {
        Self::with_threads(file, 1, max_bytes)
    }

    /// An instance sharing its matrix products among `threads` threads (the caller's and
    /// `threads - 1` workers); `threads` must be 1 for a module that is not the threaded flavour.
    /// Returns once every worker has entered `worker_run`, so the first call already uses them.
    pub fn with_threads(file: &ModuleFile, threads: u32, max_bytes: Option<usize>) -> Result<Runtime> {
        anyhow::ensure!(threads >= 1, "--threads must be at least 1");
        let mut builder = StoreLimitsBuilder::new();
        if let Some(max) = max_bytes {
            builder = builder.memory_size(max);
        }
        let mut store = Store::new(&file.engine, HostState { start: Instant::now(), limits: builder.build() });
        store.limiter(|s| &mut s.limits);
        let Some(ty) = file.shared_memory_import() else {
            anyhow::ensure!(
                threads == 1,
                "this module is single-threaded (no shared memory): use the threaded flavour (`make wasm-threads`) for {threads} threads"
            );
            let instance = linker(file, &mut store, None)?.instantiate(&mut store, &file.module)?;
            let memory = instance.get_memory(&mut store, "memory").context("module exports no memory")?;
            return Ok(Runtime { store, instance, memory: LinearMemory::Own(memory), workers: None });
        };
        // The module's own minimum; the maximum is its declared one, or what `max_bytes` allows.
        let max_pages = match max_bytes {
            Some(max) => (max as u64 / 65536).max(ty.minimum()),
            None => ty.maximum().context("the shared memory import declares no maximum")?,
        };
        let memory = SharedMemory::new(&file.engine, MemoryType::shared(ty.minimum() as u32, max_pages as u32)).map_err(anyhow::Error::from)?;
        let instance = linker(file, &mut store, Some(&memory))?.instantiate(&mut store, &file.module)?;
        let mut rt = Runtime { store, instance, memory: LinearMemory::Shared(memory.clone()), workers: None };
        let mut handles = Vec::new();
        for worker in 0..threads - 1 {
            let top = rt.func::<u32, u32>("worker_stack_top")?.call(&mut rt.store, worker).map_err(anyhow::Error::from)?;
            if top == 0 {
                let message = rt.last_error()?;
                rt.workers = Some(Workers { handles });
                return Err(AbiError { status: Status::OutOfMemory.code(), message }.into());
            }
            let (file, memory) = (file.clone(), memory.clone());
            handles.push(std::thread::spawn(move || -> Result<u32> {
                let mut store = Store::new(&file.engine, HostState { start: Instant::now(), limits: StoreLimitsBuilder::new().build() });
                let instance = linker(&file, &mut store, Some(&memory))?.instantiate(&mut store, &file.module)?;
                let sp = instance.get_global(&mut store, STACK_POINTER_GLOBAL).context("the threaded module exports no __stack_pointer")?;
                sp.set(&mut store, wasmtime::Val::I32(top as i32)).map_err(anyhow::Error::from)?;
                let run = instance.get_typed_func::<u32, u32>(&mut store, "worker_run").map_err(anyhow::Error::from)?;
                run.call(&mut store, worker).map_err(anyhow::Error::from).context("worker_run trapped")
            }));
        }
        rt.workers = Some(Workers { handles });
        // Wait for the workers to check in (they only speed things up; results never depend on it).
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while rt.diagnostics()?.threads < threads {
            if let Some(done) = rt.workers.as_ref().and_then(|w| w.handles.iter().position(|h| h.is_finished())) {
                let h = rt.workers.as_mut().unwrap().handles.remove(done);
                let status = h.join().map_err(|_| anyhow!("a worker thread panicked"))??;
                bail!("worker_run returned {} ({}) at start", status, status_name(status));
            }
            anyhow::ensure!(Instant::now() < deadline, "workers did not start within 30 s");
            std::thread::yield_now();
        }
        Ok(rt)
    }

    /// Ends the workers' loops and joins their threads; a worker that failed is reported.
    pub fn stop_workers(&mut self) -> Result<()> {
        let Some(workers) = self.workers.take() else { return Ok(()) };
        let s = self.call_status("stop_workers", ())?;
        self.check(s)?;
        for h in workers.handles {
            let status = h.join().map_err(|_| anyhow!("a worker thread panicked"))??;
            anyhow::ensure!(status == 0, "worker_run returned {} ({})", status, status_name(status));
        }
        Ok(())
    }

    fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(&mut self, name: &str) -> Result<TypedFunc<P, R>> {
        self.instance.get_typed_func::<P, R>(&mut self.store, name).map_err(anyhow::Error::from).with_context(|| format!("export {name}"))
    }

    /// Calls an export returning a status, with raw arguments (misuse tests use this directly).
    pub fn call_status<P: wasmtime::WasmParams>(&mut self, name: &str, args: P) -> Result<u32> {
        let f = self.func::<P, u32>(name)?;
        f.call(&mut self.store, args).map_err(anyhow::Error::from).with_context(|| format!("{name} trapped"))
    }

    fn check(&mut self, status: u32) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        let message = self.last_error().unwrap_or_else(|e| format!("(error text unavailable: {e})"));
        Err(AbiError { status, message }.into())
    }

    pub fn memory_size(&self) -> usize {
        match &self.memory {
            LinearMemory::Own(m) => m.data_size(&self.store),
            LinearMemory::Shared(m) => m.data_size(),
        }
    }

    pub fn alloc(&mut self, size: u32) -> Result<u32> {
        let f = self.func::<u32, u32>("alloc")?;
        let ptr = f.call(&mut self.store, size).map_err(anyhow::Error::from).context("alloc trapped")?;
        if ptr == 0 {
            let message = self.last_error()?;
            return Err(anyhow!("alloc({size}) failed: {message}"));
        }
        Ok(ptr)
    }

    pub fn free(&mut self, ptr: u32) -> Result<()> {
        let s = self.call_status("dealloc", ptr)?;
        self.check(s)
    }

    pub fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        match &self.memory {
            LinearMemory::Own(m) => m.write(&mut self.store, ptr as usize, bytes).map_err(|e| anyhow!("writing host buffer: {e}")),
            LinearMemory::Shared(m) => {
                let cells = shared_range(m, ptr, bytes.len())?;
                // SAFETY: the range is inside the shared memory (checked). The host writes only
                // buffers the module gave it with `alloc` and does so while no export runs, and
                // workers touch only the leader's job data, so no thread accesses these bytes now.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), cells.as_ptr() as *mut u8, bytes.len()) };
                Ok(())
            }
        }
    }

    pub fn read(&self, ptr: u32, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        match &self.memory {
            LinearMemory::Own(m) => m.read(&self.store, ptr as usize, &mut out).map_err(|e| anyhow!("reading module memory: {e}"))?,
            LinearMemory::Shared(m) => {
                let cells = shared_range(m, ptr, len)?;
                // SAFETY: in bounds (checked); no export runs while the host reads, so no thread
                // writes these bytes now (see `write`).
                unsafe { std::ptr::copy_nonoverlapping(cells.as_ptr() as *const u8, out.as_mut_ptr(), len) };
            }
        }
        Ok(out)
    }

    /// Copies `bytes` into a fresh buffer (at least 1 byte long so empty inputs have an address).
    pub fn put(&mut self, bytes: &[u8]) -> Result<u32> {
        let ptr = self.alloc(bytes.len().max(1) as u32)?;
        self.write(ptr, bytes)?;
        Ok(ptr)
    }

    pub fn last_error(&mut self) -> Result<String> {
        let cap = 4096u32;
        let buf = self.alloc(cap + 4)?;
        let s = self.call_status("last_error", (buf, cap, buf + cap))?;
        let len = u32::from_le_bytes(self.read(buf + cap, 4)?.try_into().unwrap()) as usize;
        let text = self.read(buf, len.min(cap as usize))?;
        self.free(buf)?;
        anyhow::ensure!(s == 0, "last_error returned {s}");
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Loads a package; `context_len` 0 = the default.
    pub fn load_model(&mut self, package: &[u8], context_len: u32) -> Result<()> {
        self.load_model_with_flags(package, context_len, 0)
    }

    /// Loads a package with `load_model` flags (`LOAD_KV_F16`).
    pub fn load_model_with_flags(&mut self, package: &[u8], context_len: u32, flags: u32) -> Result<()> {
        let ptr = self.alloc(package.len() as u32)?;
        self.write(ptr, package)?;
        let s = self.call_status("load_model", (ptr, package.len() as u32, context_len, flags))?;
        if s != 0 {
            // The host keeps the buffer on failure.
            let err = self.check(s);
            self.free(ptr)?;
            return err;
        }
        Ok(())
    }

    /// `load_begin`: starts a streaming load of `total_len` bytes.
    pub fn load_begin(&mut self, total_len: u32, context_len: u32, flags: u32) -> Result<()> {
        let s = self.call_status("load_begin", (total_len, context_len, flags))?;
        self.check(s)
    }

    /// `load_append` of one chunk, passed through a scratch host buffer of `scratch_cap` bytes at
    /// `scratch` (the caller allocates it once; `chunk.len() <= scratch_cap`).
    pub fn load_append_via(&mut self, scratch: u32, chunk: &[u8]) -> Result<()> {
        self.write(scratch, chunk)?;
        let s = self.call_status("load_append", (scratch, chunk.len() as u32))?;
        self.check(s)
    }

    pub fn load_finish(&mut self) -> Result<()> {
        let s = self.call_status("load_finish", ())?;
        self.check(s)
    }

    pub fn load_abort(&mut self) -> Result<()> {
        let s = self.call_status("load_abort", ())?;
        self.check(s)
    }

    /// `TRL_RESULT_LOAD_PROGRESS`: (total, received, verified).
    pub fn load_progress(&mut self) -> Result<(u64, u64, u64)> {
        let b = self.read_result(result_kind::LOAD_PROGRESS)?;
        anyhow::ensure!(b.len() == 24, "load progress is {} bytes, expected 24", b.len());
        let u = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        Ok((u(0), u(1), u(2)))
    }

    /// Loads a package streamed from `source` (`total_len` bytes) in chunks of at most `chunk`
    /// bytes, each verified as it arrives (`load_begin`, `load_append`, `load_finish`). A failure
    /// ends the stream in the module; the scratch buffer is freed either way.
    pub fn load_model_streaming(&mut self, source: &mut dyn std::io::Read, total_len: u64, chunk: usize, context_len: u32, flags: u32) -> Result<()> {
        let total = u32::try_from(total_len).map_err(|_| anyhow!("a package of {total_len} bytes does not fit in wasm32 memory"))?;
        self.load_begin(total, context_len, flags)?;
        let chunk = chunk.clamp(1, total.max(1) as usize);
        let scratch = self.alloc(chunk as u32)?;
        let mut buf = vec![0u8; chunk];
        let r = (|| {
            let mut left = total_len as usize;
            while left > 0 {
                let n = source.read(&mut buf[..chunk.min(left)]).context("reading the package")?;
                anyhow::ensure!(n > 0, "the package ended {left} bytes early");
                self.load_append_via(scratch, &buf[..n])?;
                left -= n;
            }
            self.load_finish()
        })();
        if r.is_err() {
            // Ends a stream the module still holds (an I/O error above); WRONG_STATE when it is over already.
            let _ = self.call_status("load_abort", ());
        }
        self.free(scratch)?;
        r
    }

    pub fn unload_model(&mut self) -> Result<()> {
        let s = self.call_status("unload_model", ())?;
        self.check(s)
    }

    pub fn set_sampling(&mut self, p: &Sampling) -> Result<()> {
        let s = self.call_status("set_sampling", (p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty, p.repetition_window, p.seed))?;
        self.check(s)
    }

    fn with_input(&mut self, name: &str, bytes: &[u8], extra: (u32, u32)) -> Result<()> {
        let ptr = self.put(bytes)?;
        let s = self.call_status(name, (ptr, bytes.len() as u32, extra.0, extra.1));
        self.free(ptr)?;
        let s = s?;
        self.check(s)
    }

    pub fn add_stop_string(&mut self, text: &str) -> Result<()> {
        let ptr = self.put(text.as_bytes())?;
        let s = self.call_status("add_stop_string", (ptr, text.len() as u32));
        self.free(ptr)?;
        let s = s?;
        self.check(s)
    }

    /// Constrains the following generations by a GBNF grammar, or (`json_schema`) a JSON Schema.
    pub fn set_grammar(&mut self, text: &[u8], json_schema: bool) -> Result<()> {
        let flags = if json_schema { tinyrustlm::abi_facts::GRAMMAR_JSON_SCHEMA } else { 0 };
        let ptr = self.put(text)?;
        let s = self.call_status("set_grammar", (ptr, text.len() as u32, flags));
        self.free(ptr)?;
        let s = s?;
        self.check(s)
    }

    pub fn clear_grammar(&mut self) -> Result<()> {
        let s = self.call_status("clear_grammar", ())?;
        self.check(s)
    }

    /// `TRL_RESULT_GRAMMAR_STATS` of the current generation.
    pub fn grammar_stats(&mut self) -> Result<GrammarStats> {
        let w = self.read_u32s(result_kind::GRAMMAR_STATS)?;
        anyhow::ensure!(w.len() == 9, "TRL_RESULT_GRAMMAR_STATS: {} words, expected 9 (a module of another ABI revision?)", w.len());
        Ok(GrammarStats {
            constrained: w[0] != 0,
            masked_steps: w[1],
            mask_cache_hits: w[2],
            mask_cache_entries: w[3],
            mask_ms: f32::from_bits(w[4]),
            trie_nodes: w[5],
            trie_build_ms: f32::from_bits(w[6]),
            grammar_rules: w[7],
            whole_mask_steps: w[8],
        })
    }

    pub fn tokenize(&mut self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let ptr = self.put(text.as_bytes())?;
        let s = self.call_status("tokenize", (ptr, text.len() as u32, parse_special as u32));
        self.free(ptr)?;
        let s = s?;
        self.check(s)?;
        self.read_u32s(result_kind::TOKENIZED)
    }

    pub fn generate_start(&mut self, prompt: &str, max_new_tokens: u32, flags: u32) -> Result<()> {
        self.with_input("generate_start", prompt.as_bytes(), (max_new_tokens, flags))
    }

    pub fn generate_step(&mut self, max_steps: u32) -> Result<()> {
        let s = self.call_status("generate_step", max_steps)?;
        self.check(s)
    }

    pub fn generate(&mut self, prompt: &str, max_new_tokens: u32, flags: u32) -> Result<()> {
        self.with_input("generate", prompt.as_bytes(), (max_new_tokens, flags))
    }

    pub fn reset(&mut self) -> Result<()> {
        let s = self.call_status("reset", ())?;
        self.check(s)
    }

    /// Saves the conversation (`save_session`) and reads the SES1 snapshot.
    pub fn save_session(&mut self) -> Result<Vec<u8>> {
        let s = self.call_status("save_session", ())?;
        self.check(s)?;
        self.read_result(result_kind::SESSION)
    }

    /// Restores a conversation from SES1 bytes (`restore_session`).
    pub fn restore_session(&mut self, bytes: &[u8]) -> Result<()> {
        self.adapter_call("restore_session", bytes)
    }

    fn adapter_call(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let ptr = self.put(bytes)?;
        let s = self.call_status(name, (ptr, bytes.len() as u32));
        self.free(ptr)?;
        let s = s?;
        self.check(s)
    }

    /// Checks an adapter against the loaded model without applying it.
    pub fn validate_adapter(&mut self, bytes: &[u8]) -> Result<()> {
        self.adapter_call("validate_adapter_delta", bytes)
    }

    /// Applies an adapter (the conversation is reset).
    pub fn apply_adapter(&mut self, bytes: &[u8]) -> Result<()> {
        self.adapter_call("apply_adapter_delta", bytes)
    }

    pub fn remove_last_adapter(&mut self) -> Result<()> {
        let s = self.call_status("remove_last_adapter", ())?;
        self.check(s)
    }

    pub fn reset_adapters(&mut self) -> Result<()> {
        let s = self.call_status("reset_adapters", ())?;
        self.check(s)
    }

    /// Runs an eval case file in the module and returns the sidecar bytes.
    pub fn run_eval(&mut self, cases: &[u8]) -> Result<Vec<u8>> {
        let ptr = self.put(cases)?;
        let s = self.call_status("run_eval", (ptr, cases.len() as u32, 0u32));
        self.free(ptr)?;
        let s = s?;
        self.check(s)?;
        self.read_result(result_kind::EVAL_SIDECAR)
    }

    /// Renders a conversation with the package's chat template (`render_chat`; flags `TRL_CHAT_*`).
    pub fn render_chat(&mut self, messages: &[tinyrustlm::tokenizer::chat::ChatMessage<'_>], flags: u32) -> Result<String> {
        self.render_chat_raw(&tinyrustlm::tokenizer::chat::encode_messages(messages), flags)
    }

    /// `render_chat` on an encoded message list as given (misuse tests pass malformed ones).
    pub fn render_chat_raw(&mut self, encoded: &[u8], flags: u32) -> Result<String> {
        let ptr = self.put(encoded)?;
        let s = self.call_status("render_chat", (ptr, encoded.len() as u32, flags));
        self.free(ptr)?;
        let s = s?;
        self.check(s)?;
        String::from_utf8(self.read_result(result_kind::CHAT_PROMPT)?).context("render_chat returned text that is not UTF-8")
    }

    /// Scores `tokens` (`score_tokens`): the log-probabilities of `tokens[first_scored..]` and the
    /// argmax after each prefix from `tokens[..first_scored]` on.
    pub fn score_tokens(&mut self, tokens: &[u32], first_scored: u32, flags: u32) -> Result<Scores> {
        let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        let ptr = self.put(&bytes)?;
        let s = self.call_status("score_tokens", (ptr, tokens.len() as u32, first_scored, flags));
        self.free(ptr)?;
        let s = s?;
        self.check(s)?;
        let logprobs = self.read_result(result_kind::SCORE_LOGPROBS)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        Ok(Scores { logprobs, argmax: self.read_u32s(result_kind::SCORE_ARGMAX)? })
    }

    /// Reads a whole result (growing the buffer when the module says it is too small).
    pub fn read_result(&mut self, kind: u32) -> Result<Vec<u8>> {
        let mut cap = 4096u32;
        loop {
            let buf = self.alloc(cap + 4)?;
            let s = self.call_status("read_result", (kind, buf, cap, buf + cap))?;
            let len = u32::from_le_bytes(self.read(buf + cap, 4)?.try_into().unwrap());
            if s == Status::BufferTooSmall.code() && len > cap {
                self.free(buf)?;
                cap = len;
                continue;
            }
            let data = self.read(buf, len.min(cap) as usize);
            self.free(buf)?;
            self.check(s)?;
            return data;
        }
    }

    pub fn read_u32s(&mut self, kind: u32) -> Result<Vec<u32>> {
        Ok(self.read_result(kind)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect())
    }

    pub fn read_text(&mut self) -> Result<String> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read_result(result_kind::TEXT)?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).context("module returned text that is not UTF-8")
    }

    pub fn logits(&mut self) -> Result<Vec<f32>> {
        Ok(self.read_result(result_kind::LOGITS)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }

    pub fn state(&mut self) -> Result<GenerationState> {
        let w = self.read_u32s(result_kind::STATE)?;
        Ok(GenerationState { state: w[0], stop_reason: w[1], prompt_tokens: w[2], generated_tokens: w[3] })
    }

    pub fn diagnostics(&mut self) -> Result<Diagnostics> {
        let len = DIAGNOSTICS_LEN as u32;
        let buf = self.alloc(len)?;
        let s = self.call_status("read_diagnostics", (buf, len))?;
        let bytes = self.read(buf, DIAGNOSTICS_LEN)?;
        self.free(buf)?;
        self.check(s)?;
        Diagnostics::parse(&bytes)
    }

    /// Runs a whole generation, calling `on_text` with each chunk as it arrives.
    pub fn generate_streaming(&mut self, prompt: &str, max_new_tokens: u32, flags: u32, mut on_text: impl FnMut(&str)) -> Result<Generation> {
        self.generate_start(prompt, max_new_tokens, flags)?;
        let mut text = String::new();
        while self.state()?.running() {
            self.generate_step(1)?;
            let chunk = self.read_text()?;
            on_text(&chunk);
            text.push_str(&chunk);
        }
        let tail = self.read_text()?;
        on_text(&tail);
        text.push_str(&tail);
        self.finish(text)
    }

    /// Reads the outcome of a finished generation.
    pub fn finish(&mut self, text: String) -> Result<Generation> {
        Ok(Generation { prompt_tokens: self.read_u32s(result_kind::PROMPT_TOKENS)?, tokens: self.read_u32s(result_kind::TOKENS)?, text, state: self.state()? })
    }

    /// One-call generation.
    pub fn generate_all(&mut self, prompt: &str, max_new_tokens: u32, flags: u32) -> Result<Generation> {
        self.generate(prompt, max_new_tokens, flags)?;
        let text = self.read_text()?;
        self.finish(text)
    }
}

/// `TRL_RESULT_GRAMMAR_STATS`: what masking cost the current generation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GrammarStats {
    pub constrained: bool,
    pub masked_steps: u32,
    pub mask_cache_hits: u32,
    pub mask_cache_entries: u32,
    pub mask_ms: f32,
    pub trie_nodes: u32,
    pub trie_build_ms: f32,
    pub grammar_rules: u32,
    /// Masked steps that needed the whole-vocabulary mask (the rest tested leading tokens only).
    pub whole_mask_steps: u32,
}

/// Sampling settings as `set_sampling` takes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub repetition_window: u32,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, repetition_window: 64, seed: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub state: GenerationState,
}

/// What `score_tokens` returns (see the header).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub logprobs: Vec<f32>,
    pub argmax: Vec<u32>,
}

/// Status codes as named in the header.
pub fn status_name(code: u32) -> &'static str {
    Status::from_code(code).map_or("(unknown status)", Status::name)
}

/// The status of an error returned by this wrapper, if it came from the module.
pub fn status_of(e: &anyhow::Error) -> Option<u32> {
    e.downcast_ref::<AbiError>().map(|a| a.status)
}
