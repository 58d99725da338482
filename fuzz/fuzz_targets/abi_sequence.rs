#![no_main]

/// Extra coverage counters libFuzzer reads from this section (its "extra counters" on Linux): one
/// per (export, status) and per consecutive pair, because the module's own code runs inside
/// wasmtime without instrumentation.
#[used]
#[link_section = "__libfuzzer_extra_counters"]
static mut STATE_COUNTERS: [u8; 4096] = [0; 4096];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tinyrustlm_fuzz::abi_sequence::abi_sequence(data, &mut |i| {
        let i = i % 4096;
        // SAFETY: libFuzzer runs the target on one thread and reads the counters only between
        // runs; the index is reduced into the array's bounds above.
        unsafe {
            let p = core::ptr::addr_of_mut!(STATE_COUNTERS) as *mut u8;
            *p.add(i) = (*p.add(i)).saturating_add(1);
        }
    });
});
