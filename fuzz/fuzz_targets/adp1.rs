#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tinyrustlm_fuzz::checks::adapter(*b"ADP1", data);
});
