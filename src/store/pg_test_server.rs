//! The integration-test harness's PostgreSQL (`tests/support/postgres.rs`)
//! for the library's unit tests: the same file, included by path with the
//! install steps it uses, so that both start PostgreSQL one way.

#![allow(dead_code)]

use std::path::PathBuf;

/// The build's target directory (`<target>/<profile>/deps/<test binary>`),
/// where the install lock shared with the integration tests lives.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

#[path = "../../tests/support/install.rs"]
mod install;
#[path = "../../tests/support/ports.rs"]
mod ports;
#[path = "../../tests/support/postgres.rs"]
mod server;

pub use server::Postgres;
