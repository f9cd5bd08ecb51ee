#![no_main]

use libfuzzer_sys::fuzz_target;
use nagare_parsers::fuzzing::Target;

fuzz_target!(|data: &[u8]| Target::Ltsv.check(data));
