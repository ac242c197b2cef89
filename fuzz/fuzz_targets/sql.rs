#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| apm::__fuzz::sql(data));
