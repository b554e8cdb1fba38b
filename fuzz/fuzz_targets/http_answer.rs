#![no_main]
//! Fuzzes `pixelquery::fuzzing::http_answer` (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pixelquery::fuzzing::http_answer(data));
