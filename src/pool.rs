//! Work sharing across the threads a host lends the threaded flavour of the module.
//!
//! A WebAssembly module cannot start threads. In the threaded flavour (built with `+atomics`,
//! linear memory imported and shared) the host instantiates the same module once more per worker,
//! on the same memory, and calls `worker_run` there; that call parks the thread in this module
//! until `stop_workers` (`abi/THREADS.md` says how a host does it). The instance the host drives
//! (the *leader*) hands out work through [`for_each_column_block`]: the calling thread publishes a
//! job, takes chunks of it itself, and returns when every chunk is done, whoever ran it.
//!
//! **Same bits for any thread count.** A job is split into chunks of *output elements*, never of a
//! reduction: each element is computed by one call of the same code on the same inputs whichever
//! thread claims its chunk, so the result does not depend on how many workers run, which ones, or
//! how the chunks fell. Without workers (and in every single-thread build) the chunks run in order
//! on the caller.
//!
//! **Waiting.** Idle workers sleep in `memory.atomic.wait32` on [`Pool::wake`] after a short spin
//! (so the next job of the same forward pass, microseconds away, does not pay a wake-up). The
//! leader never blocks: it spins only for chunks other threads have already claimed, so it may run
//! on a thread that must not wait (a browser's main thread).
//!
//! **Claims.** One 64-bit word holds `epoch << 32 | n_chunks << 16 | next_chunk`. A thread takes a
//! chunk by compare-and-swap on the whole word, so a worker that read an older job can never take a
//! chunk of a newer one: the epoch would differ. The leader overwrites the job only after all of its
//! chunks have finished, so a job a worker read before a successful claim is still the current one.
#![allow(unsafe_code)]

use core::ops::Range;

/// Most workers the pool serves (the leader is one more thread). Bounds `worker_stack_top`'s table
/// and keeps chunk counts inside the claim word's 16 bits.
pub const MAX_WORKERS: u32 = 63;

/// Stack each worker runs on, allocated by `worker_stack_top`. Workers run only the chunk bodies
/// (kernels and loops over slices) and never allocate, so this is ample.
pub const WORKER_STACK_BYTES: usize = 256 * 1024;

/// Chunks per participating thread: more than one, so a thread slowed by the host (or by a busy
/// core) holds up the others by a fraction of its share instead of all of it.
const CHUNKS_PER_THREAD: usize = 4;

/// A `[n_rows][width]` f32 matrix whose columns are handed out in disjoint blocks, one per chunk.
/// `ColumnBlock::set` is the only way to write it, and only inside the block's columns.
pub struct ColumnBlock<'a> {
    ptr: *mut f32,
    len: usize,
    width: usize,
    cols: Range<usize>,
    _out: core::marker::PhantomData<&'a mut [f32]>,
}

impl ColumnBlock<'_> {
    /// The columns this block may write.
    pub fn cols(&self) -> Range<usize> {
        self.cols.clone()
    }

    /// Rows of the matrix (every block sees all of them).
    pub fn n_rows(&self) -> usize {
        self.len / self.width.max(1)
    }

    /// `out[row][col] = v`. Panics (a trap in the module: a bug, never input-driven) if `col` is not
    /// this block's or `row` is past the matrix.
    #[inline]
    pub fn set(&mut self, row: usize, col: usize, v: f32) {
        assert!(self.cols.contains(&col) && row < self.n_rows(), "column block write out of range");
        // SAFETY: `row * width + col < len` (checked above: col < width, row < len / width), so the
        // write is inside the `&mut [f32]` this block was cut from, which outlives it. Blocks of one
        // call cover disjoint column ranges and each is handed to exactly one thread, so no other
        // thread reads or writes this element while the block exists.
        unsafe { self.ptr.add(row * self.width + col).write(v) }
    }
}

// SAFETY: a block only writes its own disjoint columns (see `set`); moving it to the worker that
// claimed its chunk is the point.
unsafe impl Send for ColumnBlock<'_> {}

/// Calls `f` once per block of the columns of `out` (a `[out.len() / width][width]` matrix, row
/// major), the blocks partitioning `0..width` into ranges of at least `min_cols` columns (except
/// possibly the last), on whichever threads of the pool are free. Returns when every block is done.
pub fn for_each_column_block(out: &mut [f32], width: usize, min_cols: usize, f: &(dyn Fn(ColumnBlock<'_>) + Sync)) {
    if width == 0 || out.is_empty() {
        return;
    }
    let threads = threads() as usize;
    let n_chunks = (width / min_cols.max(1)).clamp(1, threads * CHUNKS_PER_THREAD).min(u16::MAX as usize);
    let (ptr, len) = (out.as_mut_ptr() as usize, out.len());
    let bounds = |c: usize| c * width / n_chunks..(c + 1) * width / n_chunks;
    let run_chunk = |c: usize| {
        f(ColumnBlock { ptr: ptr as *mut f32, len, width, cols: bounds(c), _out: core::marker::PhantomData });
    };
    run(n_chunks, &run_chunk);
}

/// Calls `f` once per block of consecutive units of `out` (units of `unit_len` elements, `out.len()`
/// a multiple of it), each block of at least `min_units` units (except possibly the last) and with
/// exclusive access to its part of `out`, on whichever threads of the pool are free.
pub fn for_each_unit_block(out: &mut [f32], unit_len: usize, min_units: usize, f: &(dyn Fn(Range<usize>, &mut [f32]) + Sync)) {
    let n_units = out.len().checked_div(unit_len).unwrap_or(0);
    if n_units == 0 {
        return;
    }
    let n_chunks = (n_units / min_units.max(1)).clamp(1, threads() as usize * CHUNKS_PER_THREAD).min(u16::MAX as usize);
    let ptr = out.as_mut_ptr() as usize;
    let run_chunk = |c: usize| {
        let units = c * n_units / n_chunks..(c + 1) * n_units / n_chunks;
        // SAFETY: `units` lies inside `0..n_units` and the chunks of one call partition it, each
        // run exactly once, so this sub-slice of `out` (borrowed mutably for the whole call) is
        // disjoint from every other chunk's and nothing else touches it while `f` runs.
        let block = unsafe { core::slice::from_raw_parts_mut((ptr as *mut f32).add(units.start * unit_len), units.len() * unit_len) };
        f(units, block);
    };
    run(n_chunks, &run_chunk);
}

/// Scratch buffers for pool jobs: `n_slots` slices of `slot_len` f32s. A chunk borrows a free one
/// for as long as it runs ([`ScratchSlots::with_slot`]), so jobs need no per-thread state and the
/// results do not depend on which slot a chunk got (a chunk overwrites what it reads).
pub struct ScratchSlots {
    buf: alloc::vec::Vec<f32>,
    slot_len: usize,
    /// Bit `i`: slot `i` is borrowed.
    in_use: core::sync::atomic::AtomicU64,
}

/// Most slots a [`ScratchSlots`] holds (bits of its mask).
const MAX_SLOTS: usize = 64;

impl ScratchSlots {
    pub fn try_new(n_slots: usize, slot_len: usize) -> Result<ScratchSlots, alloc::collections::TryReserveError> {
        let mut slots = ScratchSlots { buf: alloc::vec::Vec::new(), slot_len, in_use: core::sync::atomic::AtomicU64::new(0) };
        slots.try_grow(n_slots)?;
        Ok(slots)
    }

    pub fn n_slots(&self) -> usize {
        self.buf.len().checked_div(self.slot_len).unwrap_or(0)
    }

    pub fn bytes(&self) -> usize {
        self.buf.len() * 4
    }

    /// At least `n_slots` slots (at most 64): called between jobs, so a pool that gained workers
    /// gets one slot per thread. Fails without changing anything.
    pub fn try_grow(&mut self, n_slots: usize) -> Result<(), alloc::collections::TryReserveError> {
        let want = n_slots.min(MAX_SLOTS) * self.slot_len;
        if want > self.buf.len() {
            self.buf.try_reserve_exact(want - self.buf.len())?;
            self.buf.resize(want, 0.0);
        }
        Ok(())
    }

    /// Runs `f` on a slot no other chunk holds, waiting (spinning) while all are borrowed.
    pub fn with_slot<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> R {
        use core::sync::atomic::Ordering::{AcqRel, Acquire, Release};
        let n = self.n_slots();
        assert!(n > 0, "ScratchSlots without slots");
        let slot = loop {
            let used = self.in_use.load(Acquire);
            let free = (!used).trailing_zeros() as usize;
            if free < n && self.in_use.compare_exchange_weak(used, used | 1 << free, AcqRel, Acquire).is_ok() {
                break free;
            }
            core::hint::spin_loop();
        };
        // SAFETY: bit `slot` of `in_use` is ours until the release below, so no other chunk
        // borrows this slice meanwhile; it lies inside `buf` (slot < n_slots), which `&self` keeps
        // alive and unmoved (`try_grow` needs `&mut self`).
        let scratch = unsafe { core::slice::from_raw_parts_mut((self.buf.as_ptr() as *mut f32).add(slot * self.slot_len), self.slot_len) };
        let r = f(scratch);
        self.in_use.fetch_and(!(1 << slot), Release);
        r
    }
}

/// Threads that take part in a job: the caller plus the workers now inside `worker_run`.
pub fn threads() -> u32 {
    1 + imp::running_workers()
}

/// Runs `job(0) … job(n_chunks - 1)`, each exactly once, on the pool; returns when all are done.
fn run(n_chunks: usize, job: &(dyn Fn(usize) + Sync)) {
    if n_chunks <= 1 || imp::running_workers() == 0 {
        (0..n_chunks).for_each(job);
        return;
    }
    imp::run(n_chunks, job);
}

#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub use imp::LockedDlmalloc;
pub use imp::{stop_workers, worker_run, worker_stack_top, WorkerError};

#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
mod imp {
    use core::arch::wasm32::{memory_atomic_notify, memory_atomic_wait32};
    use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

    use super::{MAX_WORKERS, WORKER_STACK_BYTES};

    /// Spins (each a `spin_loop` hint) a worker waits for the next job before it sleeps: a forward
    /// pass publishes one job per matrix product, a few microseconds apart.
    const SPINS_BEFORE_SLEEP: u32 = 1 << 15;

    /// The shared state, in linear memory that every instance of the module sees.
    struct Pool {
        /// `epoch << 32 | n_chunks << 16 | next_chunk` of the current job.
        claim: AtomicU64,
        /// Address of the leader's `&(dyn Fn(usize) + Sync)` for the current job.
        job: AtomicUsize,
        /// Chunks of the current job that have finished.
        done: AtomicU32,
        /// Bumped when a job is published or the workers are told to stop; workers sleep on it.
        wake: AtomicI32,
        /// Workers about to sleep or asleep on `wake`: publishing notifies only when there are some
        /// (a notify is a call into the host, too dear for every matrix product of a decode step).
        sleeping: AtomicU32,
        /// Bumped by `stop_workers`; a worker returns when it differs from its value at entry.
        stop: AtomicU32,
        /// Workers inside `worker_run`.
        running: AtomicU32,
        /// Bit `i` of word `i / 64`: worker `i` is inside `worker_run`.
        busy: AtomicU64,
        /// Stack tops handed out by `worker_stack_top`, 0 where none yet.
        stacks: [AtomicUsize; MAX_WORKERS as usize],
    }

    static POOL: Pool = Pool {
        claim: AtomicU64::new(0),
        job: AtomicUsize::new(0),
        done: AtomicU32::new(0),
        wake: AtomicI32::new(0),
        sleeping: AtomicU32::new(0),
        stop: AtomicU32::new(0),
        running: AtomicU32::new(0),
        busy: AtomicU64::new(0),
        stacks: [const { AtomicUsize::new(0) }; MAX_WORKERS as usize],
    };

    type Job<'a> = &'a (dyn Fn(usize) + Sync);

    pub fn running_workers() -> u32 {
        POOL.running.load(Acquire)
    }

    /// The global allocator of the threaded flavour: dlmalloc behind a spin lock (its own `global`
    /// feature refuses `atomics`). Only the leader allocates in practice (workers run kernels on
    /// buffers allocated at load), so the lock is uncontended; spinning keeps it usable on a
    /// thread that must not wait.
    pub struct LockedDlmalloc {
        locked: core::sync::atomic::AtomicBool,
        heap: core::cell::UnsafeCell<dlmalloc::Dlmalloc>,
    }

    impl LockedDlmalloc {
        pub const fn new() -> LockedDlmalloc {
            LockedDlmalloc { locked: core::sync::atomic::AtomicBool::new(false), heap: core::cell::UnsafeCell::new(dlmalloc::Dlmalloc::new()) }
        }

        fn with_heap<R>(&self, f: impl FnOnce(&mut dlmalloc::Dlmalloc) -> R) -> R {
            while self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
                core::hint::spin_loop();
            }
            // SAFETY: `locked` is held, so this is the only reference to the heap until it is
            // released below.
            let r = f(unsafe { &mut *self.heap.get() });
            self.locked.store(false, Release);
            r
        }
    }

    impl Default for LockedDlmalloc {
        fn default() -> LockedDlmalloc {
            LockedDlmalloc::new()
        }
    }

    // SAFETY: every access to the heap goes through `with_heap`, which holds the lock.
    unsafe impl Sync for LockedDlmalloc {}

    // SAFETY: each method forwards to dlmalloc's matching call under the lock, with the caller's
    // layout, so dlmalloc's own contract (the GlobalAlloc one) is what holds.
    unsafe impl core::alloc::GlobalAlloc for LockedDlmalloc {
        unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
            // SAFETY: forwarded under the lock (see the impl).
            self.with_heap(|h| unsafe { h.malloc(layout.size(), layout.align()) })
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
            // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
            self.with_heap(|h| unsafe { h.free(ptr, layout.size(), layout.align()) })
        }
        unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
            // SAFETY: forwarded under the lock (see the impl).
            self.with_heap(|h| unsafe { h.calloc(layout.size(), layout.align()) })
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: core::alloc::Layout, new_size: usize) -> *mut u8 {
            // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
            self.with_heap(|h| unsafe { h.realloc(ptr, layout.size(), layout.align(), new_size) })
        }
    }

    /// Why `worker_stack_top` or `worker_run` refused.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum WorkerError {
        /// The index is not below [`MAX_WORKERS`].
        BadIndex,
        /// The stack could not be allocated.
        OutOfMemory,
        /// `worker_run` for an index whose stack was never handed out, or that is already running.
        WrongState,
    }

    pub fn worker_stack_top(worker: u32) -> Result<usize, WorkerError> {
        let slot = POOL.stacks.get(worker as usize).ok_or(WorkerError::BadIndex)?;
        let top = slot.load(Acquire);
        if top != 0 {
            return Ok(top);
        }
        let layout = core::alloc::Layout::from_size_align(WORKER_STACK_BYTES, 16).map_err(|_| WorkerError::OutOfMemory)?;
        // SAFETY: the layout has a non-zero size. The block is never freed: a worker may be parked
        // on it for the module's lifetime, and a second call for the index returns the same stack.
        let base = unsafe { alloc::alloc::alloc(layout) } as usize;
        if base == 0 {
            return Err(WorkerError::OutOfMemory);
        }
        let top = base + WORKER_STACK_BYTES;
        match slot.compare_exchange(0, top, AcqRel, Acquire) {
            Ok(_) => Ok(top),
            Err(theirs) => {
                // Another thread set it first; give ours back.
                // SAFETY: `base` came from `alloc` with this layout just above and was not shared.
                unsafe { alloc::alloc::dealloc(base as *mut u8, layout) };
                Ok(theirs)
            }
        }
    }

    pub fn worker_run(worker: u32) -> Result<(), WorkerError> {
        if worker >= MAX_WORKERS {
            return Err(WorkerError::BadIndex);
        }
        if POOL.stacks[worker as usize].load(Acquire) == 0 {
            return Err(WorkerError::WrongState);
        }
        let bit = 1u64 << worker;
        if POOL.busy.fetch_or(bit, AcqRel) & bit != 0 {
            return Err(WorkerError::WrongState);
        }
        let stop_at_entry = POOL.stop.load(Acquire);
        POOL.running.fetch_add(1, AcqRel);
        loop {
            let wake = POOL.wake.load(Acquire);
            if POOL.stop.load(Acquire) != stop_at_entry {
                break;
            }
            work_on_current_job();
            let mut spins = 0;
            while POOL.wake.load(Acquire) == wake && spins < SPINS_BEFORE_SLEEP {
                core::hint::spin_loop();
                spins += 1;
            }
            // Announce the sleep before re-checking `wake` inside the wait: a publisher bumps `wake`
            // before it reads `sleeping` (both SeqCst), so either it sees us and notifies, or our
            // wait sees the new `wake` and returns at once. No wake-up is lost.
            POOL.sleeping.fetch_add(1, SeqCst);
            // SAFETY: `wake` is a live, aligned i32 in linear memory; waiting returns at once if it
            // no longer holds `wake`. Only workers wait, and hosts run them where waiting is allowed.
            unsafe { memory_atomic_wait32(POOL.wake.as_ptr(), wake, -1) };
            POOL.sleeping.fetch_sub(1, SeqCst);
        }
        POOL.running.fetch_sub(1, AcqRel);
        POOL.busy.fetch_and(!bit, AcqRel);
        Ok(())
    }

    pub fn stop_workers() {
        POOL.stop.fetch_add(1, AcqRel);
        wake_all();
    }

    fn wake_all() {
        POOL.wake.fetch_add(1, SeqCst);
        if POOL.sleeping.load(SeqCst) > 0 {
            // SAFETY: `wake` is a live, aligned i32 in linear memory; notify only wakes waiters.
            unsafe { memory_atomic_notify(POOL.wake.as_ptr(), u32::MAX) };
        }
    }

    /// Takes and runs chunks of the current job until none is left unclaimed.
    fn work_on_current_job() {
        loop {
            let claim = POOL.claim.load(Acquire);
            let (n_chunks, next) = ((claim >> 16) & 0xffff, claim & 0xffff);
            if next >= n_chunks {
                return;
            }
            // Read before the claim: if the claim below succeeds, this job's chunks were not all
            // finished, so the leader has not replaced it.
            let job = POOL.job.load(Acquire);
            if POOL.claim.compare_exchange_weak(claim, claim + 1, AcqRel, Relaxed).is_err() {
                continue;
            }
            // SAFETY: `job` is the address of the leader's `Job` for this epoch (published before
            // the claim word that our compare-and-swap matched); the leader keeps it and everything
            // it borrows alive until `done` reaches `n_chunks`, which needs this chunk.
            let f: Job<'_> = unsafe { *(job as *const Job<'_>) };
            f(next as usize);
            POOL.done.fetch_add(1, Release);
        }
    }

    pub fn run(n_chunks: usize, job: Job<'_>) {
        let job_ref: &Job<'_> = &job;
        POOL.job.store(job_ref as *const Job<'_> as usize, Release);
        POOL.done.store(0, Relaxed);
        let epoch = (POOL.claim.load(Relaxed) >> 32).wrapping_add(1) & 0xffff_ffff;
        POOL.claim.store(epoch << 32 | (n_chunks as u64) << 16, Release);
        wake_all();
        work_on_current_job();
        // Chunks other threads claimed are running now; none is left to take. Spin, never block.
        while POOL.done.load(Acquire) as usize != n_chunks {
            core::hint::spin_loop();
        }
    }
}

/// Builds without shared memory have no workers: every job runs on the caller.
#[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
mod imp {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum WorkerError {
        BadIndex,
        OutOfMemory,
        WrongState,
    }

    pub fn running_workers() -> u32 {
        0
    }

    pub fn run(n_chunks: usize, job: &(dyn Fn(usize) + Sync)) {
        (0..n_chunks).for_each(job);
    }

    pub fn worker_stack_top(_: u32) -> Result<usize, WorkerError> {
        Err(WorkerError::WrongState)
    }

    pub fn worker_run(_: u32) -> Result<(), WorkerError> {
        Err(WorkerError::WrongState)
    }

    pub fn stop_workers() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_blocks_cover_every_element_once() {
        for (rows, width, min_cols) in [(1, 1, 1), (3, 7, 2), (2, 130, 16), (5, 64, 100)] {
            let mut out = vec![0.0f32; rows * width];
            for_each_column_block(&mut out, width, min_cols, &|mut block| {
                for r in 0..block.n_rows() {
                    for c in block.cols() {
                        block.set(r, c, (r * width + c) as f32 + 1.0);
                    }
                }
            });
            for (i, v) in out.iter().enumerate() {
                assert_eq!(*v, i as f32 + 1.0, "rows {rows} width {width}");
            }
        }
    }

    #[test]
    fn unit_blocks_cover_every_unit_once_and_slots_are_exclusive() {
        let slots = ScratchSlots::try_new(2, 3).unwrap();
        for (n_units, unit_len, min_units) in [(1, 4, 1), (7, 3, 2), (40, 2, 1)] {
            let mut out = vec![0.0f32; n_units * unit_len];
            for_each_unit_block(&mut out, unit_len, min_units, &|units, block| {
                assert_eq!(block.len(), units.len() * unit_len);
                slots.with_slot(|scratch| {
                    scratch.fill(units.start as f32);
                    for (u, v) in units.clone().zip(block.chunks_exact_mut(unit_len)) {
                        v.fill(u as f32 + scratch[0] - units.start as f32);
                    }
                });
            });
            for (i, v) in out.iter().enumerate() {
                assert_eq!(*v, (i / unit_len) as f32);
            }
        }
        assert_eq!(slots.in_use.load(core::sync::atomic::Ordering::Relaxed), 0, "every slot is given back");
    }

    #[test]
    #[should_panic(expected = "column block write out of range")]
    fn a_block_cannot_write_outside_its_columns() {
        let mut out = vec![0.0f32; 8];
        for_each_column_block(&mut out, 8, 4, &|mut block| {
            let c = block.cols().end % 8;
            block.set(0, c, 1.0);
        });
    }
}
