//! The harness's install path (`support::install`) with stand-in installers:
//! concurrent callers share one installation, and a failed one says why.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::support::install::{ensure_installed_under, run};

#[test]
fn two_callers_at_once_both_get_the_result_of_one_installation() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("install.lock");
    let marker = dir.path().join("installed");
    let installs = Arc::new(AtomicUsize::new(0));
    // Both callers pass their first look before either may install, so both
    // go for the lock: without it, or without the second look under it, the
    // installer would run twice.
    let both_looked = Arc::new(Barrier::new(2));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (lock, marker, installs, both_looked) =
                (lock.clone(), marker.clone(), installs.clone(), both_looked.clone());
            std::thread::spawn(move || {
                let mut first_look = true;
                let installed = || {
                    if std::mem::take(&mut first_look) {
                        both_looked.wait();
                    }
                    std::fs::read_to_string(&marker).ok()
                };
                let install = || {
                    installs.fetch_add(1, Ordering::SeqCst);
                    // Long enough for the other caller to be waiting on the lock.
                    std::thread::sleep(Duration::from_millis(300));
                    std::fs::write(&marker, "the stand-in tool").map_err(|e| e.to_string())
                };
                ensure_installed_under(&lock, "a stand-in tool", installed, install)
            })
        })
        .collect();
    let results: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(results, [Ok("the stand-in tool".to_owned()), Ok("the stand-in tool".to_owned())]);
    assert_eq!(installs.load(Ordering::SeqCst), 1, "the installer ran more than once");
}

#[test]
fn a_failed_installation_reports_the_installers_own_output_and_the_next_caller_tries_again() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("install.lock");
    let failed = ensure_installed_under(
        &lock,
        "a stand-in tool",
        || None::<()>,
        || {
            run(Command::new("sh").args([
                "-c",
                "echo 'Reading package lists...'; echo 'E: Unable to locate package nothing-here' >&2; exit 100",
            ]))
        },
    )
    .unwrap_err();
    for expected in [
        "installing a stand-in tool failed",
        "exit status: 100",
        "E: Unable to locate package nothing-here",
        "Reading package lists...",
    ] {
        assert!(failed.contains(expected), "{expected:?} missing from the error:\n{failed}");
    }

    // The lock was let go: a later caller installs.
    let done = std::cell::Cell::new(false);
    let again = ensure_installed_under(
        &lock,
        "a stand-in tool",
        || done.get().then_some(()),
        || {
            done.set(true);
            Ok(())
        },
    );
    assert_eq!(again, Ok(()));
}
