//! `gatekeeper check-config` (the real binary) says which store the
//! configuration selects and, for PostgreSQL, whether the database answers:
//! before an operator starts Gatekeeper on a database, not after it failed.

use std::process::Command;

use crate::support::postgres::Postgres;
use crate::support::{Gatekeeper, PLACEHOLDER_HS, free_port, gatekeeper_bin};

/// `check-config`'s verdict and what it printed.
fn check_config(gk: &Gatekeeper) -> (bool, String) {
    let out = Command::new(gatekeeper_bin()).args(["check-config", "--config"]).arg(&gk.config).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Replaces the `database:` section the harness wrote (the last one).
fn set_database(gk: &Gatekeeper, section: &str) {
    let text = std::fs::read_to_string(&gk.config).unwrap();
    let start = text.find("database:\n").expect("a database section");
    std::fs::write(&gk.config, format!("{}database:\n{section}", &text[..start])).unwrap();
}

#[test]
fn check_config_names_the_store_and_says_whether_postgresql_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let gk = Gatekeeper::prepare(&tmp.path().join("gatekeeper"), PLACEHOLDER_HS, "@.*:localhost");
    let (ok, out) = check_config(&gk);
    assert!(ok, "{out}");
    assert!(out.contains("database: sled at"), "{out}");

    // A fresh database: reachable, nothing made by the check.
    let pg = Postgres::shared();
    let url = gk.use_postgres();
    let (ok, out) = check_config(&gk);
    assert!(ok, "{out}");
    assert!(out.contains("database: PostgreSQL (database.url), reachable, empty"), "{out}");
    let (_, again) = check_config(&gk);
    assert!(again.contains("reachable, empty"), "the check made no schema: {again}");

    // Once Gatekeeper has opened it (inspect opens the store as `run`
    // does, migrations included), the check reports the schema's version.
    let inspected = Command::new(gatekeeper_bin()).args(["inspect", "--config"]).arg(&gk.config).output().unwrap();
    assert!(inspected.status.success(), "{}", String::from_utf8_lossy(&inspected.stderr));
    let (ok, out) = check_config(&gk);
    assert!(ok, "{out}");
    assert!(out.contains("database: PostgreSQL (database.url), reachable, schema version "), "{out}");
    // Nothing ran: nobody holds the lease (who does is the store's unit test).
    assert!(out.contains("; lease held by nobody (never taken yet)"), "{out}");

    // Over TLS, the server's certificate checked against the given CA.
    let database = url.rsplit('/').next().unwrap();
    let tls_url = format!("{url}?sslmode=require");
    set_database(&gk, &format!("  url: {tls_url}\n  ca_file: {}\n", pg.ca_file().display()));
    let (ok, out) = check_config(&gk);
    assert!(ok, "{out}");
    assert!(out.contains("PostgreSQL (database.url), reachable, schema version"), "{out}");
    // Without the CA the system's roots do not know the server's
    // certificate: refused, not connected in the clear.
    set_database(&gk, &format!("  url: {tls_url}\n"));
    let (ok, out) = check_config(&gk);
    assert!(!ok, "a certificate no trusted CA signed was accepted: {out}");
    assert!(out.contains("database.url: PostgreSQL:"), "{out}");
    assert!(out.contains("certificate"), "says why: {out}");

    // Over the server's Unix socket (the URL's host a percent-encoded
    // directory), as on a host that runs both.
    let socket_dir = pg.ca_file().parent().unwrap().display().to_string().replace('/', "%2F");
    set_database(&gk, &format!("  url: postgresql://postgres@{socket_dir}:{}/{database}\n", pg.port));
    let (ok, out) = check_config(&gk);
    assert!(ok, "{out}");
    assert!(out.contains("PostgreSQL (database.url), reachable, schema version"), "{out}");

    // Unreachable: nothing listens on the port. The failure is named and
    // the exit status says so; the password given apart is not printed.
    let nobody = format!("postgresql://postgres@127.0.0.1:{}/{database}", free_port());
    set_database(&gk, &format!("  url: {nobody}\n  password: hunter2-secret\n"));
    let (ok, out) = check_config(&gk);
    assert!(!ok, "{out}");
    assert!(out.contains("database.url: PostgreSQL:") && out.contains("connecting to PostgreSQL"), "{out}");
    assert!(!out.contains("reachable"), "{out}");
    assert!(!out.contains("hunter2-secret"), "the password leaked into the output: {out}");
    // A database that does not exist on a server that answers: the
    // server's own words.
    set_database(&gk, &format!("  url: {}\n", pg.url("gk_no_such_database")));
    let (ok, out) = check_config(&gk);
    assert!(!ok, "{out}");
    assert!(out.contains("\"gk_no_such_database\" does not exist"), "{out}");
}
