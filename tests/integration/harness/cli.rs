//! Running the `rexec` binary from tests: output, JSON lines, peak memory.

use std::collections::HashMap;
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

/// Runs `cmd` to the end and returns its output and its peak resident memory in KiB,
/// measured by GNU time (`/usr/bin/time -f %M`, installed if missing). Not `wait4` on a
/// child of the test process: a child spawned from a large process (the test binary
/// holding other tests' outputs) starts with that process's high-water mark.
pub fn output_with_peak_rss(cmd: &mut Command) -> (Output, u64) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if !std::path::Path::new("/usr/bin/time").exists() {
            super::run(
                Command::new("apt-get")
                    .args([
                        "-o",
                        "DPkg::Lock::Timeout=300",
                        "install",
                        "-y",
                        "-qq",
                        "time",
                    ])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            );
        }
    });
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => timed.env(key, v),
            None => timed.env_remove(key),
        };
    }
    let output = timed.stdin(Stdio::null()).output().unwrap();
    let text = std::fs::read_to_string(report.path()).unwrap();
    let peak = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in {text:?}"));
    (output, peak)
}

/// `line` (a shell command line) under a pseudo-terminal (util-linux `script`), stdin and
/// stdout piped, no ssh-agent in its environment: for [`answer_prompt`].
pub fn on_a_terminal(line: &str) -> Command {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", line, "/dev/null"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    cmd
}

/// Spawns `cmd` (from [`on_a_terminal`]), waits until the terminal shows `prompt`, types
/// `answer` and a newline, and returns everything the terminal showed once `cmd` ended.
/// The answer is typed only once the prompt is up, as a person would: echo is off from
/// then on, and typed-ahead input would be echoed by the terminal.
pub fn answer_prompt(cmd: &mut Command, prompt: &str, answer: &str) -> String {
    use std::io::{Read, Write};
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !text(&seen).contains(prompt) {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt {prompt:?}: {}", text(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    assert!(child.wait().unwrap().code().is_some(), "{}", text(&seen));
    text(&seen)
}
