//! The `rexec` binary. The command line over many hosts arrives with the inventory and
//! fan-out pool; until then it runs the library's example flow on one host.

fn main() -> std::process::ExitCode {
    eprintln!("rexec: the multi-host command line is not built yet; see examples/run_one.rs");
    std::process::ExitCode::from(2)
}
