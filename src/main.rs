//! The `dbctl` binary: everything lives in the library so tests can drive it.

fn main() -> std::process::ExitCode {
    dbctl::run(std::env::args_os())
}
