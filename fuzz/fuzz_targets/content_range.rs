#![no_main]
//! Fuzzes `pixelquery::fuzzing::content_range` (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pixelquery::fuzzing::content_range(data));
