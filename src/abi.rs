//! The exported C ABI (documented in `abi/tinyrustlm.h`; names and signatures listed in
//! [`crate::abi_facts::EXPORTS`]). Thin by design: [`HostBuffers::slice`] and
//! [`HostBuffers::slice_mut`] turn each (ptr, len) into a checked slice, [`HostBuffers::len_out`]
//! checks an out-length pointer that [`HostBuffers::write_len`] later fills, and [`export`] turns
//! the engine's `Result` into a status code.
//!
//! Pointers the host passes must lie inside a buffer it got from `alloc` (and has not freed or handed
//! to `load_model`). That rule lets every (ptr, len) be checked against a table instead of trusted,
//! and guarantees host buffers never alias the engine's own memory — so the engine works on the
//! host's bytes in place, with no copy.

use alloc::vec::Vec;
use core::cell::RefCell;

use crate::abi_facts::{ResultKind, ABI_VERSION, DIAGNOSTICS_LEN, MAX_ERROR_LEN};
use crate::buffer::AlignedBytes;
use crate::engine::Engine;
use crate::error::{Error, InlineStr, Status};
use crate::sampler::SamplingParams;

/// Live host buffers at once; generous for any host, and bounds the table scan.
const MAX_HOST_BUFFERS: usize = 1024;

#[link(wasm_import_module = "env")]
extern "C" {
    /// Milliseconds from a monotonic clock (JS: `performance.now()`); only used for tokens/s.
    fn trl_now_ms() -> f64;
}

fn now_ms() -> f64 {
    // SAFETY: the import takes no arguments and touches no module memory; any host-provided f64 is
    // a valid return value (a nonsensical clock only skews the reported tokens/s).
    unsafe { trl_now_ms() }
}

struct HostBuffer {
    addr: usize,
    bytes: AlignedBytes,
}

/// The live buffers from `alloc`: the only memory a host pointer may name.
struct HostBuffers(Vec<HostBuffer>);

/// A `len_out_ptr` checked by [`HostBuffers::len_out`].
#[derive(Clone, Copy)]
struct LenOut(u32);

impl HostBuffers {
    /// Index of the host buffer holding `[ptr, ptr + len)` and the offset of `ptr` in it.
    fn locate(&self, ptr: u32, len: u32, field: &'static str) -> Result<(usize, usize), Error> {
        let (ptr, len) = (ptr as usize, len as usize);
        let end = ptr.checked_add(len).ok_or_else(|| Error::new(Status::OutOfBounds, field, ptr as u64, "ptr + len overflows"))?;
        self.0
            .iter()
            .position(|b| ptr >= b.addr && end <= b.addr + b.bytes.len())
            .map(|i| (i, ptr - self.0[i].addr))
            .ok_or_else(|| Error::new(Status::OutOfBounds, field, ptr as u64, "must lie inside one live buffer from alloc"))
    }

    /// The host's bytes at `[ptr, ptr + len)`; a zero length is an empty slice, `ptr` not looked at.
    fn slice(&self, ptr: u32, len: u32, field: &'static str) -> Result<&[u8], Error> {
        if len == 0 {
            return Ok(&[]);
        }
        let (i, off) = self.locate(ptr, len, field)?;
        Ok(&self.0[i].bytes.as_slice()[off..off + len as usize])
    }

    /// As [`HostBuffers::slice`], writable.
    fn slice_mut(&mut self, ptr: u32, len: u32, field: &'static str) -> Result<&mut [u8], Error> {
        if len == 0 {
            return Ok(&mut []);
        }
        let (i, off) = self.locate(ptr, len, field)?;
        Ok(&mut self.0[i].bytes.as_mut_slice()[off..off + len as usize])
    }

    /// Checks `len_out_ptr` (4 bytes) and the destination `[dst_ptr, dst_ptr + dst_cap)` before
    /// anything is read, so a bad pointer consumes nothing. Both may lie in one buffer but must not
    /// overlap: the length would overwrite the result (INVALID_ARGUMENT).
    fn len_out(&self, len_out_ptr: u32, dst_ptr: u32, dst_cap: u32) -> Result<LenOut, Error> {
        self.slice(len_out_ptr, 4, "len_out_ptr")?;
        self.slice(dst_ptr, dst_cap, "dst")?;
        let (dst, out) = (u64::from(dst_ptr), u64::from(len_out_ptr));
        if dst_cap > 0 && out < dst + u64::from(dst_cap) && dst < out + 4 {
            return Err(Error::new(Status::InvalidArgument, "len_out_ptr", out, "must not overlap [dst_ptr, dst_ptr + dst_cap)"));
        }
        Ok(LenOut(len_out_ptr))
    }

    /// Stores `n` (u32 LE) at a checked `len_out_ptr`.
    fn write_len(&mut self, at: LenOut, n: usize) -> Result<(), Error> {
        self.slice_mut(at.0, 4, "len_out_ptr")?.copy_from_slice(&(n as u32).to_le_bytes());
        Ok(())
    }

    fn alloc(&mut self, size: u32) -> Result<u32, Error> {
        if size == 0 {
            return Err(Error::new(Status::InvalidArgument, "size", 0, "must be at least 1"));
        }
        if self.0.len() >= MAX_HOST_BUFFERS {
            return Err(Error::new(Status::LimitExceeded, "buffers", self.0.len() as u64, "at most 1024 live buffers"));
        }
        let oom = || Error::new(Status::OutOfMemory, "size", size as u64, "allocation failed");
        self.0.try_reserve(1).map_err(|_| oom())?;
        let bytes = AlignedBytes::zeroed(size as usize).map_err(|_| oom())?;
        let addr = bytes.as_ptr() as usize;
        self.0.push(HostBuffer { addr, bytes });
        Ok(addr as u32)
    }

    fn release(&mut self, ptr: u32) -> Result<(), Error> {
        let i = self.0.iter().position(|b| b.addr == ptr as usize);
        let i = i.ok_or_else(|| Error::new(Status::InvalidArgument, "ptr", ptr as u64, "is not a live buffer from alloc"))?;
        self.0.swap_remove(i);
        Ok(())
    }

    /// Takes the whole buffer `(ptr, len)` out of the table (for `load_model`).
    fn take_whole(&mut self, ptr: u32, len: u32) -> Result<HostBuffer, Error> {
        let i = self.0.iter().position(|b| b.addr == ptr as usize && b.bytes.len() == len as usize);
        let i = i.ok_or_else(|| Error::new(Status::InvalidArgument, "ptr", ptr as u64, "must be a whole buffer from alloc (ptr and its exact size)"))?;
        Ok(self.0.swap_remove(i))
    }
}

struct State {
    engine: Engine,
    buffers: HostBuffers,
    /// Inline, so recording an OUT_OF_MEMORY failure needs no memory.
    last_error: InlineStr<{ MAX_ERROR_LEN as usize }>,
}

struct Global(RefCell<Option<State>>);

// SAFETY: in the single-thread flavours (no `atomics`) there is one thread and exports never run
// concurrently. In the threaded flavour every export that touches the state holds `STATE_LOCK`
// for its whole body, so two host threads calling exports at once are serialized; workers inside
// `worker_run` never touch the state. The RefCell catches re-entrancy (there is none: the only
// import, the clock, cannot call back).
unsafe impl Sync for Global {}

static STATE: Global = Global(RefCell::new(None));

/// Held while an export runs (threaded flavour): the engine is one session, not a concurrent one.
#[cfg(target_feature = "atomics")]
static STATE_LOCK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    #[cfg(target_feature = "atomics")]
    {
        use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
        // Exports are short or are the generation itself; a second host thread spins rather than
        // waits so that the lock also works where waiting traps (a browser's main thread).
        while STATE_LOCK.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
            core::hint::spin_loop();
        }
        let r = with_state_unlocked(f);
        STATE_LOCK.store(false, Release);
        r
    }
    #[cfg(not(target_feature = "atomics"))]
    with_state_unlocked(f)
}

fn with_state_unlocked<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.0.borrow_mut();
    let state = guard.get_or_insert_with(|| State { engine: Engine::new(now_ms), buffers: HostBuffers(Vec::new()), last_error: InlineStr::empty() });
    f(state)
}

impl State {
    fn fail(&mut self, e: Error) -> u32 {
        self.last_error = InlineStr::from_fmt(format_args!("{e}"));
        e.status.code()
    }

    fn status(&mut self, r: Result<(), Error>) -> u32 {
        match r {
            Ok(()) => Status::Ok.code(),
            Err(e) => self.fail(e),
        }
    }
}

/// Runs an export's body on the engine and the host buffers; an error becomes its status code and
/// the text `last_error` returns.
fn export(body: impl FnOnce(&mut Engine, &mut HostBuffers) -> Result<(), Error>) -> u32 {
    with_state(|s| {
        let r = body(&mut s.engine, &mut s.buffers);
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn abi_version() -> u32 {
    ABI_VERSION
}

#[no_mangle]
pub extern "C" fn alloc(size: u32) -> u32 {
    with_state(|s| match s.buffers.alloc(size) {
        Ok(addr) => addr,
        Err(e) => {
            s.fail(e);
            0
        }
    })
}

#[no_mangle]
pub extern "C" fn dealloc(ptr: u32) -> u32 {
    export(|_, buffers| buffers.release(ptr))
}

#[no_mangle]
pub extern "C" fn load_model(ptr: u32, len: u32, context_len: u32, flags: u32) -> u32 {
    export(|engine, buffers| {
        let buffer = buffers.take_whole(ptr, len)?;
        engine.load(buffer.bytes, context_len, flags).map_err(|(e, bytes)| {
            // The host keeps its buffer, at the same address. No allocation: `take_whole` just
            // freed this slot.
            buffers.0.push(HostBuffer { addr: buffer.addr, bytes });
            e
        })
    })
}

#[no_mangle]
pub extern "C" fn load_begin(total_len: u32, context_len: u32, flags: u32) -> u32 {
    export(|engine, _| engine.load_begin(total_len, context_len, flags))
}

#[no_mangle]
pub extern "C" fn load_append(ptr: u32, len: u32) -> u32 {
    export(|engine, buffers| engine.load_append(buffers.slice(ptr, len, "chunk")?))
}

#[no_mangle]
pub extern "C" fn load_finish() -> u32 {
    export(|engine, _| engine.load_finish())
}

#[no_mangle]
pub extern "C" fn load_abort() -> u32 {
    export(|engine, _| engine.load_abort())
}

#[no_mangle]
pub extern "C" fn unload_model() -> u32 {
    export(|engine, _| engine.unload())
}

#[no_mangle]
pub extern "C" fn set_sampling(temperature: f32, top_k: u32, top_p: f32, min_p: f32, repetition_penalty: f32, repetition_window: u32, seed: u64) -> u32 {
    export(|engine, _| engine.set_sampling(SamplingParams { temperature, top_k, top_p, min_p, repetition_penalty, repetition_window, seed }))
}

#[no_mangle]
pub extern "C" fn add_stop_string(ptr: u32, len: u32) -> u32 {
    export(|engine, buffers| engine.add_stop_string(buffers.slice(ptr, len, "stop_string")?))
}

#[no_mangle]
pub extern "C" fn clear_stop_strings() -> u32 {
    export(|engine, _| {
        engine.clear_stop_strings();
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn set_grammar(ptr: u32, len: u32, flags: u32) -> u32 {
    export(|engine, buffers| engine.set_grammar(buffers.slice(ptr, len, "grammar")?, flags))
}

#[no_mangle]
pub extern "C" fn clear_grammar() -> u32 {
    export(|engine, _| {
        engine.clear_grammar();
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn tokenize(ptr: u32, len: u32, flags: u32) -> u32 {
    export(|engine, buffers| engine.tokenize(buffers.slice(ptr, len, "text")?, flags))
}

#[no_mangle]
pub extern "C" fn generate_start(ptr: u32, len: u32, max_new_tokens: u32, flags: u32) -> u32 {
    export(|engine, buffers| engine.start(buffers.slice(ptr, len, "prompt")?, max_new_tokens, flags))
}

#[no_mangle]
pub extern "C" fn generate_step(max_steps: u32) -> u32 {
    export(|engine, _| engine.step(max_steps))
}

#[no_mangle]
pub extern "C" fn generate(ptr: u32, len: u32, max_new_tokens: u32, flags: u32) -> u32 {
    export(|engine, buffers| engine.generate(buffers.slice(ptr, len, "prompt")?, max_new_tokens, flags))
}

#[no_mangle]
pub extern "C" fn reset() -> u32 {
    export(|engine, _| engine.reset())
}

#[no_mangle]
pub extern "C" fn save_session() -> u32 {
    export(|engine, _| engine.save_session())
}

#[no_mangle]
pub extern "C" fn restore_session(ptr: u32, len: u32) -> u32 {
    export(|engine, buffers| engine.restore_session(buffers.slice(ptr, len, "snapshot")?))
}

#[no_mangle]
pub extern "C" fn validate_adapter_delta(ptr: u32, len: u32) -> u32 {
    export(|engine, buffers| engine.validate_adapter(buffers.slice(ptr, len, "adapter")?))
}

#[no_mangle]
pub extern "C" fn apply_adapter_delta(ptr: u32, len: u32) -> u32 {
    export(|engine, buffers| engine.apply_adapter(buffers.slice(ptr, len, "adapter")?))
}

#[no_mangle]
pub extern "C" fn remove_last_adapter() -> u32 {
    export(|engine, _| engine.remove_last_adapter())
}

#[no_mangle]
pub extern "C" fn reset_adapters() -> u32 {
    export(|engine, _| engine.reset_adapters())
}

#[no_mangle]
pub extern "C" fn run_eval(ptr: u32, len: u32, flags: u32) -> u32 {
    export(|engine, buffers| {
        if flags != 0 {
            return Err(Error::new(Status::InvalidArgument, "flags", flags as u64, "no eval flags are defined; must be 0"));
        }
        crate::eval::run(engine, buffers.slice(ptr, len, "cases")?)
    })
}

#[no_mangle]
pub extern "C" fn render_chat(ptr: u32, len: u32, flags: u32) -> u32 {
    export(|engine, buffers| engine.render_chat(buffers.slice(ptr, len, "messages")?, flags))
}

#[no_mangle]
pub extern "C" fn score_tokens(ptr: u32, n_tokens: u32, first_scored: u32, flags: u32) -> u32 {
    export(|engine, buffers| {
        let bytes = buffers.slice(ptr, crate::score::ids_len(n_tokens)?, "tokens")?;
        engine.score(&crate::score::ids_from_le(bytes)?, first_scored, flags)
    })
}

#[no_mangle]
pub extern "C" fn read_result(kind: u32, dst_ptr: u32, dst_cap: u32, len_out_ptr: u32) -> u32 {
    export(|engine, buffers| {
        let kind =
            ResultKind::from_code(kind).ok_or_else(|| Error::new(Status::InvalidArgument, "kind", kind as u64, "must be one of the TRL_RESULT_* kinds"))?;
        let len_out = buffers.len_out(len_out_ptr, dst_ptr, dst_cap)?;
        // BUFFER_TOO_SMALL reports the needed length through len_out too.
        let (r, n) = match engine.read(kind, buffers.slice_mut(dst_ptr, dst_cap, "dst")?) {
            Ok(n) => (Ok(()), n),
            Err((e, needed)) => (Err(e), needed),
        };
        buffers.write_len(len_out, n)?;
        r
    })
}

#[no_mangle]
pub extern "C" fn read_diagnostics(dst_ptr: u32, dst_cap: u32) -> u32 {
    export(|engine, buffers| {
        if (dst_cap as usize) < DIAGNOSTICS_LEN {
            return Err(Error::new(Status::BufferTooSmall, "dst_cap", dst_cap as u64, "must be at least 128 bytes"));
        }
        // The whole (dst_ptr, dst_cap) range must be the host's, not just the bytes written.
        let dst = buffers.slice_mut(dst_ptr, dst_cap, "dst")?;
        let memory = core::arch::wasm32::memory_size(0) as u64 * 65536;
        dst[..DIAGNOSTICS_LEN].copy_from_slice(&engine.diagnostics(memory).to_bytes());
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn last_error(dst_ptr: u32, dst_cap: u32, len_out_ptr: u32) -> u32 {
    with_state(|s| {
        let State { buffers, last_error, .. } = s;
        let r = buffers.len_out(len_out_ptr, dst_ptr, dst_cap).and_then(|len_out| {
            let message = last_error.as_bytes();
            let n = message.len().min(dst_cap as usize);
            buffers.slice_mut(dst_ptr, n as u32, "dst")?.copy_from_slice(&message[..n]);
            buffers.write_len(len_out, message.len())
        });
        s.status(r)
    })
}

// ---- Threaded flavour only (`abi/THREADS.md`) ----------------------------------------------

/// Error of a worker export, as a status and the text `last_error` gives.
#[cfg(target_feature = "atomics")]
fn worker_error(e: crate::pool::WorkerError, worker: u32) -> Error {
    use crate::pool::WorkerError;
    match e {
        WorkerError::BadIndex => Error::new(Status::InvalidArgument, "worker", worker as u64, "must be below TRL_MAX_WORKERS"),
        WorkerError::OutOfMemory => Error::new(Status::OutOfMemory, "worker", worker as u64, "the worker's stack could not be allocated"),
        WorkerError::WrongState => {
            Error::new(Status::WrongState, "worker", worker as u64, "needs a stack from worker_stack_top and must not be running already")
        }
    }
}

#[cfg(target_feature = "atomics")]
#[no_mangle]
pub extern "C" fn worker_stack_top(worker: u32) -> u32 {
    with_state(|s| match crate::pool::worker_stack_top(worker) {
        Ok(top) => top as u32,
        Err(e) => {
            s.fail(worker_error(e, worker));
            0
        }
    })
}

/// Runs on a worker instance: never touches the engine's state (that is the leader's), only the
/// pool. Returns when `stop_workers` is called.
#[cfg(target_feature = "atomics")]
#[no_mangle]
pub extern "C" fn worker_run(worker: u32) -> u32 {
    match crate::pool::worker_run(worker) {
        Ok(()) => Status::Ok.code(),
        Err(e) => worker_error(e, worker).status.code(),
    }
}

#[cfg(target_feature = "atomics")]
#[no_mangle]
pub extern "C" fn stop_workers() -> u32 {
    crate::pool::stop_workers();
    Status::Ok.code()
}

#[cfg(feature = "kernel-selftest")]
#[no_mangle]
pub extern "C" fn kernel_selftest() -> u32 {
    crate::quant::kernel_selftest()
}
