//! Any bytes as a LIBSVM file: a table or an IngestError naming the line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As under the binary's default driver_memory: a few huge indices must not allocate GiBs.
    submit::exec::memory::set_limit(1 << 30, "1G");
    let _ = submit::ingest::libsvm::parse(std::path::Path::new("fuzz.libsvm"), data, None);
});
