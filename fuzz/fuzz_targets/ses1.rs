#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tinyrustlm_fuzz::checks::ses1(data);
});
