//! Every integration test in one binary, so that matrix-sdk and the rest of
//! Gatekeeper link once instead of once per file: the real-Synapse scenarios
//! (one module per guarantee), the fuzz smoke run and the dependency audit.
//!
//! libtest runs these tests on parallel threads of one process (two on a
//! two-core machine), so nothing here may rely on a process of its own: each
//! scenario has its own temporary directory, ports, Synapse and Gatekeeper,
//! and every install step the harness takes runs once under a file lock
//! (`support::install`).

// matrix-sdk's futures in `client_mode` nest deeper than the default allows.
#![recursion_limit = "256"]

// The harness stays in tests/support/: the examples include it too.
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod appservice;
mod audit;
mod check_config;
mod client_mode;
mod crash_loop;
mod decisions;
mod digest;
mod disk_full;
mod downtime;
mod durability;
mod email;
mod failover;
mod fuzz_smoke;
mod gate;
mod homeserver_faults;
mod install;
mod lanes;
mod migrate;
mod native;
mod observability;
mod policy;
mod ports;
mod screener;
mod shared_rooms;
mod spam_wave;
mod stranded;
mod urgent;
