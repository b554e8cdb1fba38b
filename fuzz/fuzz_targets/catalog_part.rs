#![no_main]
//! Fuzzes `pixelquery::fuzzing::catalog_part` (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pixelquery::fuzzing::catalog_part(data));
