#![no_main]

use libfuzzer_sys::fuzz_target;

// The Forward Protocol decoders the aggregator runs on every byte a client sends.
fuzz_target!(|data: &[u8]| nagare_core::forward::fuzz::check(data));
