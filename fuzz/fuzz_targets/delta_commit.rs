#![no_main]
//! Fuzzes `pixelquery::fuzzing::delta_commit` (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pixelquery::fuzzing::delta_commit(data));
