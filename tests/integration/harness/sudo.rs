//! sudo for the tests: installed when missing, and sudoers drop-ins for the test user.
//!
//! sudoers is machine-wide, so the drop-ins of one test process take turns ([`Sudoers`]
//! holds a lock while its drop-in exists) and every drop-in sets `timestamp_timeout=0`:
//! no test depends on credentials cached by another.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::{run, TEST_USER};

/// Installs sudo once (serialised with other test processes by apt's own lock).
pub fn sudo_installed() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        super::setup();
        if !Path::new("/usr/bin/sudo").exists() || !Path::new("/usr/sbin/visudo").exists() {
            let install = || {
                Command::new("apt-get")
                    .args([
                        "-o",
                        "DPkg::Lock::Timeout=300",
                        "install",
                        "-y",
                        "-qq",
                        "sudo",
                    ])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .is_ok_and(|s| s.success())
            };
            // Package lists may be missing on a fresh machine: update once and retry.
            if !install() {
                run(Command::new("apt-get").args([
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    "update",
                    "-qq",
                ]));
                assert!(install(), "cannot install sudo");
            }
        }
    });
}

/// A sudoers drop-in, removed on drop; the tests of this file hold it one at a time.
pub struct Sudoers {
    path: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::new(());

impl Sudoers {
    /// `rules` (sudoers lines) in /etc/sudoers.d/rexec-test-NAME-PID, checked by visudo.
    /// No rules: the test user is in no sudoers file.
    pub fn new(name: &str, rules: &str) -> Sudoers {
        sudo_installed();
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let path = PathBuf::from(format!(
            "/etc/sudoers.d/rexec-test-{name}-{}",
            std::process::id()
        ));
        let text = format!("Defaults:{TEST_USER} timestamp_timeout=0\n{rules}\n");
        let candidate =
            std::env::temp_dir().join(format!("rexec-sudoers-{name}-{}", std::process::id()));
        fs::write(&candidate, &text).unwrap();
        run(Command::new("visudo")
            .args(["-c", "-q", "-f"])
            .arg(&candidate));
        fs::remove_file(&candidate).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        Sudoers { path, _turn: turn }
    }
}

impl Drop for Sudoers {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
