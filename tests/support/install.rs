//! Install steps the harness takes on a fresh machine (the Synapse venv,
//! aiosmtpd, chromium, PostgreSQL, strace): each runs once, under one
//! file lock that every test thread and every test process shares, and a
//! failure reports what the installer itself printed.

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The lock every install step takes: one file for all of them, because
/// they contend for the same things (apt's own lock, the one venv's pip).
pub fn shared_lock() -> PathBuf {
    super::target_dir().join("install.lock")
}

thread_local! {
    /// Set while this thread holds an install lock: flock does not nest (a
    /// second lock on the same file from the same thread waits for ever).
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// What `installed` finds, installing it first if it is missing: once, under
/// the shared lock. Panics with the installer's own output if it fails.
pub fn ensure_installed<T>(
    what: &str,
    installed: impl FnMut() -> Option<T>,
    install: impl FnOnce() -> Result<(), String>,
) -> T {
    ensure_installed_under(&shared_lock(), what, installed, install).unwrap_or_else(|e| panic!("{e}"))
}

/// [`ensure_installed`] with the lock file given and the failure returned.
///
/// `installed` is asked before the lock is taken (the usual case: nothing to
/// do, no waiting) and again once it is held, because whoever held it before
/// may have installed the very thing; only then does `install` run.
pub fn ensure_installed_under<T>(
    lock: &Path,
    what: &str,
    mut installed: impl FnMut() -> Option<T>,
    install: impl FnOnce() -> Result<(), String>,
) -> Result<T, String> {
    if let Some(found) = installed() {
        return Ok(found);
    }
    assert!(!HOLDING.get(), "installing {what} inside another install step would wait for itself: install it first");
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let _held = Held::take(lock)?;
    if let Some(found) = installed() {
        return Ok(found);
    }
    eprintln!("installing {what} (first run only)");
    install().map_err(|e| format!("installing {what} failed: {e}"))?;
    installed().ok_or_else(|| format!("installing {what} reported success, but it is still not there"))
}

/// The install lock, held until dropped (also when an installer panics).
struct Held {
    _file: File,
}

impl Held {
    fn take(lock: &Path) -> Result<Held, String> {
        let file = File::create(lock).map_err(|e| format!("creating the install lock {}: {e}", lock.display()))?;
        file.lock().map_err(|e| format!("taking the install lock {}: {e}", lock.display()))?;
        HOLDING.set(true);
        Ok(Held { _file: file })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HOLDING.set(false);
        // Closing the file (after this) releases the lock.
    }
}

/// Runs one installer command to its end; on failure, the error carries the
/// command, its exit status and everything it printed.
pub fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let out = command.output().map_err(|e| format!("{shown} could not start: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{shown} ended with {}\n--- its stderr ---\n{}\n--- its stdout ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end(),
        String::from_utf8_lossy(&out.stdout).trim_end()
    ))
}

/// Installs Debian packages with apt (as the harness's fresh machine needs
/// them); call inside an install step, so that two never meet at apt's lock.
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive"))
}
