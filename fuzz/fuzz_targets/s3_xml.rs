#![no_main]
//! Fuzzes `pixelquery::fuzzing::s3_xml` (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pixelquery::fuzzing::s3_xml(data));
