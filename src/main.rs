//! The `submit` binary: everything lives in the library; this only installs the memory-counting
//! allocator (the `driver_memory` cap) and hands over.

#[global_allocator]
static ALLOCATOR: submit::exec::memory::CountingAllocator = submit::exec::memory::CountingAllocator;

fn main() -> std::process::ExitCode {
    submit::main_entry()
}
