//! The exported C ABI (documented in `abi/tinyrustlm.h`). Thin by design: turn (ptr, len) pairs into
//! checked slices, call the [`Engine`], turn its `Result` into a status code.
//!
//! Pointers the host passes must lie inside a buffer it got from `alloc` (and has not freed or handed
//! to `load_model`). That rule lets every (ptr, len) be checked against a table instead of trusted,
//! and guarantees host buffers never alias the engine's own memory.

use alloc::vec::Vec;
use core::cell::RefCell;

use crate::buffer::AlignedBytes;
use crate::engine::{Engine, ResultKind};
use crate::error::{Error, InlineStr, Status};
use crate::sampler::SamplingParams;

/// Bumped whenever an export's signature or meaning changes.
const ABI_VERSION: u32 = 1;
/// Live host buffers at once; generous for any host, and bounds the table scan.
const MAX_HOST_BUFFERS: usize = 1024;
/// `TRL_MAX_ERROR_LEN` in the header: status name + a field name at its cap + a value + the longest
/// rule fit, so in practice nothing is cut.
const MAX_ERROR_LEN: usize = 384;

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

struct State {
    engine: Engine,
    buffers: Vec<HostBuffer>,
    /// Inline, so recording an OUT_OF_MEMORY failure needs no memory.
    last_error: InlineStr<MAX_ERROR_LEN>,
}

struct Global(RefCell<Option<State>>);

// SAFETY: the module is built for wasm32 without the `atomics` feature, so there is exactly one
// thread and exports never run concurrently; the RefCell catches re-entrancy (there is none: the
// only import, the clock, cannot call back).
unsafe impl Sync for Global {}

static STATE: Global = Global(RefCell::new(None));

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.0.borrow_mut();
    let state = guard.get_or_insert_with(|| State { engine: Engine::new(now_ms), buffers: Vec::new(), last_error: InlineStr::empty() });
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

    /// Index of the host buffer holding `[ptr, ptr + len)` and the offset of `ptr` in it.
    fn locate(&self, ptr: u32, len: u32, field: &'static str) -> Result<(usize, usize), Error> {
        let (ptr, len) = (ptr as usize, len as usize);
        let end = ptr.checked_add(len).ok_or_else(|| Error::new(Status::OutOfBounds, field, ptr as u64, "ptr + len overflows"))?;
        self.buffers
            .iter()
            .position(|b| ptr >= b.addr && end <= b.addr + b.bytes.len())
            .map(|i| (i, ptr - self.buffers[i].addr))
            .ok_or_else(|| Error::new(Status::OutOfBounds, field, ptr as u64, "must lie inside one live buffer from alloc"))
    }

    /// The host's bytes at `[ptr, ptr + len)`; a zero length is always an empty slice.
    fn bytes(&self, ptr: u32, len: u32, field: &'static str) -> Result<&[u8], Error> {
        if len == 0 {
            return Ok(&[]);
        }
        let (i, off) = self.locate(ptr, len, field)?;
        Ok(&self.buffers[i].bytes.as_slice()[off..off + len as usize])
    }

    fn write_u32(&mut self, ptr: u32, value: u32, field: &'static str) -> Result<(), Error> {
        let (i, off) = self.locate(ptr, 4, field)?;
        self.buffers[i].bytes.as_mut_slice()[off..off + 4].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

/// Copies of host input taken before the engine runs, so host buffers and the engine are never
/// borrowed at once.
fn input(state: &State, ptr: u32, len: u32, field: &'static str) -> Result<Vec<u8>, Error> {
    let src = state.bytes(ptr, len, field)?;
    let mut v = Vec::new();
    v.try_reserve_exact(src.len()).map_err(|_| Error::new(Status::OutOfMemory, field, len as u64, "allocation failed"))?;
    v.extend_from_slice(src);
    Ok(v)
}

#[no_mangle]
pub extern "C" fn abi_version() -> u32 {
    ABI_VERSION
}

#[no_mangle]
pub extern "C" fn alloc(size: u32) -> u32 {
    with_state(|s| {
        if size == 0 {
            s.fail(Error::new(Status::InvalidArgument, "size", 0, "must be at least 1"));
            return 0;
        }
        if s.buffers.len() >= MAX_HOST_BUFFERS {
            s.fail(Error::new(Status::LimitExceeded, "buffers", s.buffers.len() as u64, "at most 1024 live buffers"));
            return 0;
        }
        if s.buffers.try_reserve(1).is_err() {
            s.fail(Error::new(Status::OutOfMemory, "size", size as u64, "allocation failed"));
            return 0;
        }
        match AlignedBytes::zeroed(size as usize) {
            Ok(bytes) => {
                let addr = bytes.as_ptr() as usize;
                s.buffers.push(HostBuffer { addr, bytes });
                addr as u32
            }
            Err(_) => {
                s.fail(Error::new(Status::OutOfMemory, "size", size as u64, "allocation failed"));
                0
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn dealloc(ptr: u32) -> u32 {
    with_state(|s| match s.buffers.iter().position(|b| b.addr == ptr as usize) {
        Some(i) => {
            s.buffers.swap_remove(i);
            Status::Ok.code()
        }
        None => s.fail(Error::new(Status::InvalidArgument, "ptr", ptr as u64, "is not a live buffer from alloc")),
    })
}

#[no_mangle]
pub extern "C" fn load_model(ptr: u32, len: u32, context_len: u32, flags: u32) -> u32 {
    with_state(|s| {
        let Some(i) = s.buffers.iter().position(|b| b.addr == ptr as usize && b.bytes.len() == len as usize) else {
            return s.fail(Error::new(Status::InvalidArgument, "ptr", ptr as u64, "must be a whole buffer from alloc (ptr and its exact size)"));
        };
        let buffer = s.buffers.swap_remove(i);
        match s.engine.load(buffer.bytes, context_len, flags) {
            Ok(()) => Status::Ok.code(),
            Err((e, bytes)) => {
                // The host keeps its buffer, at the same address.
                s.buffers.push(HostBuffer { addr: buffer.addr, bytes });
                s.fail(e)
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn unload_model() -> u32 {
    with_state(|s| {
        let r = s.engine.unload();
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn set_sampling(temperature: f32, top_k: u32, top_p: f32, min_p: f32, repetition_penalty: f32, repetition_window: u32, seed: u64) -> u32 {
    with_state(|s| {
        let params = SamplingParams { temperature, top_k, top_p, min_p, repetition_penalty, repetition_window, seed };
        let r = s.engine.set_sampling(params);
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn add_stop_string(ptr: u32, len: u32) -> u32 {
    with_state(|s| {
        let r = input(s, ptr, len, "stop_string").and_then(|text| s.engine.add_stop_string(&text));
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn clear_stop_strings() -> u32 {
    with_state(|s| {
        s.engine.clear_stop_strings();
        Status::Ok.code()
    })
}

#[no_mangle]
pub extern "C" fn tokenize(ptr: u32, len: u32, flags: u32) -> u32 {
    with_state(|s| {
        let r = input(s, ptr, len, "text").and_then(|text| s.engine.tokenize(&text, flags));
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn generate_start(ptr: u32, len: u32, max_new_tokens: u32, flags: u32) -> u32 {
    with_state(|s| {
        let r = input(s, ptr, len, "prompt").and_then(|prompt| s.engine.start(&prompt, max_new_tokens, flags));
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn generate_step(max_steps: u32) -> u32 {
    with_state(|s| {
        let r = s.engine.step(max_steps);
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn generate(ptr: u32, len: u32, max_new_tokens: u32, flags: u32) -> u32 {
    with_state(|s| {
        let r = input(s, ptr, len, "prompt").and_then(|prompt| s.engine.generate(&prompt, max_new_tokens, flags));
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn reset() -> u32 {
    with_state(|s| {
        let r = s.engine.reset();
        s.status(r)
    })
}

/// Runs `f` on the host's adapter bytes in place (no copy: an adapter can be as large as a tensor).
fn with_adapter(s: &mut State, ptr: u32, len: u32, f: impl FnOnce(&mut Engine, &[u8]) -> Result<(), Error>) -> u32 {
    let at = if len == 0 {
        None
    } else {
        match s.locate(ptr, len, "adapter") {
            Ok(at) => Some(at),
            Err(e) => return s.fail(e),
        }
    };
    let State { engine, buffers, .. } = s;
    let bytes: &[u8] = match at {
        Some((i, off)) => &buffers[i].bytes.as_slice()[off..off + len as usize],
        None => &[],
    };
    let r = f(engine, bytes);
    s.status(r)
}

#[no_mangle]
pub extern "C" fn validate_adapter_delta(ptr: u32, len: u32) -> u32 {
    with_state(|s| with_adapter(s, ptr, len, |engine, bytes| engine.validate_adapter(bytes)))
}

#[no_mangle]
pub extern "C" fn apply_adapter_delta(ptr: u32, len: u32) -> u32 {
    with_state(|s| with_adapter(s, ptr, len, |engine, bytes| engine.apply_adapter(bytes)))
}

#[no_mangle]
pub extern "C" fn remove_last_adapter() -> u32 {
    with_state(|s| {
        let r = s.engine.remove_last_adapter();
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn reset_adapters() -> u32 {
    with_state(|s| {
        let r = s.engine.reset_adapters();
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn run_eval(ptr: u32, len: u32, flags: u32) -> u32 {
    with_state(|s| {
        if flags != 0 {
            return s.fail(Error::new(Status::InvalidArgument, "flags", flags as u64, "no eval flags are defined; must be 0"));
        }
        let r = input(s, ptr, len, "cases").and_then(|cases| crate::eval::run(&mut s.engine, &cases));
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn read_result(kind: u32, dst_ptr: u32, dst_cap: u32, len_out_ptr: u32) -> u32 {
    with_state(|s| {
        let Some(kind) = ResultKind::from_code(kind) else {
            return s.fail(Error::new(Status::InvalidArgument, "kind", kind as u64, "must be 0..=6"));
        };
        // Check both host buffers before reading anything, so a bad len_out consumes no text.
        if let Err(e) = s.locate(len_out_ptr, 4, "len_out_ptr") {
            return s.fail(e);
        }
        let dst = if dst_cap == 0 { None } else {
            match s.locate(dst_ptr, dst_cap, "dst") {
                Ok(at) => Some(at),
                Err(e) => return s.fail(e),
            }
        };
        let State { engine, buffers, .. } = s;
        let mut empty = [0u8; 0];
        let dst_slice: &mut [u8] = match dst {
            Some((i, off)) => &mut buffers[i].bytes.as_mut_slice()[off..off + dst_cap as usize],
            None => &mut empty,
        };
        let (r, n) = match engine.read(kind, dst_slice) {
            Ok(n) => (Ok(()), n),
            Err((e, needed)) => (Err(e), needed),
        };
        // Cannot fail: located above.
        let _ = s.write_u32(len_out_ptr, n as u32, "len_out_ptr");
        s.status(r)
    })
}

#[no_mangle]
pub extern "C" fn read_diagnostics(dst_ptr: u32, dst_cap: u32) -> u32 {
    with_state(|s| {
        if (dst_cap as usize) < crate::diag::LAYOUT_LEN {
            return s.fail(Error::new(Status::BufferTooSmall, "dst_cap", dst_cap as u64, "must be at least 128 bytes"));
        }
        // The whole (dst_ptr, dst_cap) range must be the host's, not just the bytes written.
        if let Err(e) = s.locate(dst_ptr, dst_cap, "dst") {
            return s.fail(e);
        }
        let (i, off) = match s.locate(dst_ptr, crate::diag::LAYOUT_LEN as u32, "dst") {
            Ok(at) => at,
            Err(e) => return s.fail(e),
        };
        let memory = core::arch::wasm32::memory_size(0) as u64 * 65536;
        let record = s.engine.diagnostics(memory).to_bytes();
        s.buffers[i].bytes.as_mut_slice()[off..off + record.len()].copy_from_slice(&record);
        Status::Ok.code()
    })
}

#[no_mangle]
pub extern "C" fn last_error(dst_ptr: u32, dst_cap: u32, len_out_ptr: u32) -> u32 {
    with_state(|s| {
        if let Err(e) = s.locate(len_out_ptr, 4, "len_out_ptr") {
            return s.fail(e);
        }
        if dst_cap > 0 {
            if let Err(e) = s.locate(dst_ptr, dst_cap, "dst") {
                return s.fail(e);
            }
        }
        let msg_len = s.last_error.len();
        let n = msg_len.min(dst_cap as usize);
        if n > 0 {
            match s.locate(dst_ptr, n as u32, "dst") {
                Ok((i, off)) => {
                    let State { buffers, last_error, .. } = s;
                    buffers[i].bytes.as_mut_slice()[off..off + n].copy_from_slice(&last_error.as_bytes()[..n]);
                }
                Err(e) => return s.fail(e),
            }
        }
        let _ = s.write_u32(len_out_ptr, msg_len as u32, "len_out_ptr");
        Status::Ok.code()
    })
}

#[cfg(feature = "kernel-selftest")]
#[no_mangle]
pub extern "C" fn kernel_selftest() -> u32 {
    crate::quant::kernel_selftest()
}
