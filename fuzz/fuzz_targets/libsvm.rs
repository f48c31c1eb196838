//! Any bytes as a LIBSVM file: a table or an IngestError naming the line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = submit::ingest::libsvm::parse(std::path::Path::new("fuzz.libsvm"), data, None);
});
