#![no_main]
//! Fuzzes `pixelquery::fuzzing::warehouse_config` (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pixelquery::fuzzing::warehouse_config(data));
