//! `--json`: one JSON object per host, written straight from the host's buffers.

use std::io::{self, Write};
use std::path::Path;

use rexec::{ExitStatus, HostResult, Output};
use serde_json::json;

/// Writes a serializable value as JSON to `w`.
pub(super) fn json_to(w: &mut dyn Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *w, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => io::Error::from(kind),
        None => io::Error::other(e),
    })
}

/// One host's JSON object, in the README's key order, written straight to `w`: output
/// that is UTF-8 is escaped as it is written, other output is base64-encoded in pieces,
/// so no second copy of a large output is made.
pub(super) fn write_json_line(
    w: &mut dyn Write,
    result: &HostResult<Output>,
    out_dir: Option<&Path>,
) -> io::Result<()> {
    w.write_all(b"{\"host\":")?;
    json_to(w, &result.host)?;
    w.write_all(b",\"outcome\":")?;
    json_to(w, &result.outcome().as_str())?;
    let output = match &result.result {
        Ok(o) => Some(o),
        Err(e) => e.output(),
    };
    if let Some(o) = output {
        match &o.status {
            ExitStatus::Exited(c) => {
                w.write_all(format!(",\"exit_code\":{c}").as_bytes())?;
            }
            ExitStatus::Signaled {
                signal,
                core_dumped,
                ..
            } => {
                w.write_all(b",\"signal\":")?;
                json_to(w, signal)?;
                w.write_all(format!(",\"core_dumped\":{core_dumped}").as_bytes())?;
            }
            ExitStatus::Unknown => {}
        }
    }
    match &result.result {
        Err(e) => {
            let error = json!({
                "kind": e.kind().as_str(),
                "phase": timeout_phase(e).or_else(|| e.phase().map(|p| p.as_str())),
                "message": e.full_message(),
            });
            w.write_all(b",\"error\":")?;
            json_to(w, &error)?;
        }
        Ok(o) => {
            if let Some(note) = o.note() {
                w.write_all(b",\"note\":")?;
                json_to(w, &note)?;
            }
        }
    }
    if let Some(o) = output {
        match out_dir {
            Some(dir) => {
                w.write_all(b",\"stdout_file\":")?;
                json_to(w, &dir.join(format!("{}.out", result.host)))?;
                w.write_all(b",\"stderr_file\":")?;
                json_to(w, &dir.join(format!("{}.err", result.host)))?;
            }
            None => {
                write_bytes_field(w, "stdout", &o.stdout)?;
                write_bytes_field(w, "stderr", &o.stderr)?;
            }
        }
        w.write_all(
            format!(
                ",\"stdout_truncated\":{},\"stderr_truncated\":{},\
                 \"output_open_after_exit\":{},\"may_still_be_running\":{}",
                o.stdout_truncated,
                o.stderr_truncated,
                o.output_open_after_exit,
                o.may_still_be_running
            )
            .as_bytes(),
        )?;
    }
    w.write_all(b",\"timings_ms\":")?;
    json_to(w, &timings_json(&result.timings))?;
    w.write_all(b"}")
}

/// `"field":"text"` for UTF-8, `"field_base64":"..."` otherwise, streamed.
pub(super) fn write_bytes_field(w: &mut dyn Write, field: &str, bytes: &[u8]) -> io::Result<()> {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            w.write_all(format!(",\"{field}\":").as_bytes())?;
            json_to(w, &text)
        }
        Err(_) => {
            w.write_all(format!(",\"{field}_base64\":\"").as_bytes())?;
            // Whole 3-byte groups per piece, so the pieces join into one valid encoding.
            for piece in bytes.chunks(3 * 16 * 1024) {
                w.write_all(data_encoding::BASE64.encode(piece).as_bytes())?;
            }
            w.write_all(b"\"")
        }
    }
}

pub(super) fn timings_json(t: &rexec::Timings) -> serde_json::Value {
    json!({
        "connect": t.connect.as_millis() as u64,
        "run": t.run.as_millis() as u64,
        "total": t.total.as_millis() as u64,
    })
}

/// For timeouts: the phase, as text (`connect`, `handshake`, `auth`, `command`).
pub(super) fn timeout_phase(error: &rexec::Error) -> Option<&'static str> {
    (error.kind() == rexec::ErrorKind::Timeout)
        .then(|| error.phase().map(rexec::Phase::as_str))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rexec::{ExitStatus, HostResult, Output};

    fn result(stdout: &[u8]) -> HostResult<Output> {
        let out = Output::new(
            "web01",
            ExitStatus::Exited(0),
            stdout.to_vec(),
            b"err".to_vec(),
        );
        HostResult::from_command(0, "web01", Ok(out), rexec::Timings::default())
    }

    #[test]
    fn json_lines_keep_the_readme_order_and_stream_base64() {
        let mut buf = Vec::new();
        write_json_line(&mut buf, &result(b"hi\n"), None).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("{\"host\":\"web01\",\"outcome\":\"ok\",\"exit_code\":0,\"stdout\":\"hi\\n\",\"stderr\":\"err\""),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timings_ms"]["total"], 0);
        let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
        let mut buf = Vec::new();
        write_json_line(&mut buf, &result(&binary), None).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let decoded = data_encoding::BASE64
            .decode(v["stdout_base64"].as_str().unwrap().as_bytes())
            .unwrap();
        assert_eq!(decoded, binary);
    }
}
