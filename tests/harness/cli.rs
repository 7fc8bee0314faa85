//! Running the `rexec` binary from tests: output, JSON lines, peak memory.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The binary, with no agent in its environment.
pub fn rexec_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rexec"));
    cmd.args(args).env_remove("SSH_AUTH_SOCK");
    cmd
}

/// Runs the binary with stdin closed.
pub fn rexec(args: &[&str]) -> Output {
    rexec_command(args).stdin(Stdio::null()).output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `--json` output: the host objects by host name, and the summary object.
pub fn json_lines(out: &Output) -> (HashMap<String, Value>, Value) {
    let mut hosts = HashMap::new();
    let mut summary = Value::Null;
    for line in text(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Some(s) = v.get("summary") {
            summary = s.clone();
        } else {
            hosts.insert(v["host"].as_str().unwrap().to_owned(), v);
        }
    }
    (hosts, summary)
}

/// Runs `cmd` to the end and returns its output and its peak resident memory in KiB
/// (from `wait4`'s rusage; the child is reaped by that `wait4`).
#[allow(clippy::zombie_processes)]
pub fn output_with_peak_rss(cmd: &mut Command) -> (Output, u64) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        out.read_to_end(&mut b).unwrap();
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        err.read_to_end(&mut b).unwrap();
        b
    });
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 on our own child's pid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    use std::os::unix::process::ExitStatusExt;
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout,
        stderr,
    };
    (output, usage.ru_maxrss as u64)
}
