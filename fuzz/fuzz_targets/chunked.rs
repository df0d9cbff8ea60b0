#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| foobar_fuzz::chunked(data));
