//! The dependency audit, in every `cargo test`: Cargo.lock against the
//! RustSec advisories, with the ignore list of `.cargo/audit.toml`, through
//! `rustsec` (the library cargo-audit is built on). CI cannot reach GitHub,
//! so the advisories come from the snapshot in `audit/advisory-db`, which
//! `scripts/audit --refresh <clone>` renews; `scripts/audit` runs
//! cargo-audit itself against the live database where GitHub is reachable.

use std::collections::BTreeSet;
use std::path::Path;

use rustsec::advisory::{Id, Informational};
use rustsec::report::{Report, Settings};
use rustsec::{Database, Lockfile};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn snapshot() -> Database {
    Database::open(&root().join("audit/advisory-db")).expect("audit/advisory-db opens")
}

/// The advisories `.cargo/audit.toml` accepts, each with its reason there.
fn ignored() -> Vec<Id> {
    let text = std::fs::read_to_string(root().join(".cargo/audit.toml")).expect(".cargo/audit.toml");
    let config: toml::Table = toml::from_str(&text).expect(".cargo/audit.toml is TOML");
    let list = config.get("advisories").and_then(|a| a.get("ignore")).and_then(|i| i.as_array());
    list.into_iter()
        .flatten()
        .map(|v| v.as_str().expect("advisory IDs are strings").parse().expect("advisory ID"))
        .collect()
}

/// What `deny = ["warnings"]` in `.cargo/audit.toml` fails on: every
/// vulnerability and every informational advisory.
fn settings(ignore: Vec<Id>) -> Settings {
    Settings {
        ignore,
        informational_warnings: vec![Informational::Notice, Informational::Unmaintained, Informational::Unsound],
        ..Settings::default()
    }
}

fn findings(report: &Report) -> Vec<String> {
    let vulnerabilities = report
        .vulnerabilities
        .list
        .iter()
        .map(|v| format!("{} {}: {} ({})", v.package.name, v.package.version, v.advisory.id, v.advisory.title));
    let warnings = report.warnings.values().flatten().map(|w| {
        let (id, title) =
            w.advisory.as_ref().map_or(("?".into(), String::new()), |a| (a.id.to_string(), a.title.clone()));
        format!("{} {}: {id} {:?} ({title})", w.package.name, w.package.version, w.kind)
    });
    vulnerabilities.chain(warnings).collect()
}

#[test]
fn the_dependencies_have_no_advisory_left_unexplained() {
    let lockfile = Lockfile::load(root().join("Cargo.lock")).expect("Cargo.lock");
    // The snapshot only holds the advisories of the crates that were in
    // Cargo.lock when it was taken: a crate added since must be looked up.
    let covered: BTreeSet<String> = std::fs::read_to_string(root().join("audit/advisory-db/covered-crates.txt"))
        .expect("audit/advisory-db/covered-crates.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    let new: BTreeSet<&str> =
        // Path crates (this workspace's own) come from no registry: nothing to look up.
        lockfile
            .packages
            .iter()
            .filter(|p| p.source.is_some())
            .map(|p| p.name.as_str())
            .filter(|n| !covered.contains(*n))
            .collect();
    assert!(
        new.is_empty(),
        "crates not in the advisory snapshot: {new:?}; run `scripts/audit --refresh <advisory-db clone>`"
    );

    let db = snapshot();
    let snapshot_date = std::fs::read_to_string(root().join("audit/advisory-db/SNAPSHOT")).unwrap_or_default();
    println!("{} packages against {} advisories; {}", lockfile.packages.len(), db.iter().count(), snapshot_date.trim());
    let ignore = ignored();
    let report = Report::generate(&db, &lockfile, &settings(ignore.clone()));
    let found = findings(&report);
    assert!(found.is_empty(), "advisories to act on (or to explain in .cargo/audit.toml):\n{}", found.join("\n"));

    // Every exception still applies: an entry for an advisory that no
    // longer concerns us would hide the next one with the same ID.
    let everything = findings(&Report::generate(&db, &lockfile, &settings(Vec::new())));
    for id in &ignore {
        assert!(
            everything.iter().any(|f| f.contains(id.as_str())),
            "{id} is ignored in .cargo/audit.toml but no longer applies: remove it"
        );
    }
    println!("accepted, with reasons in .cargo/audit.toml:\n{}", everything.join("\n"));
}

/// The audit is not vacuous: the snapshot and the library find a known
/// vulnerability in a lock file that has it.
#[test]
fn the_audit_finds_a_known_vulnerability() {
    let lockfile: Lockfile = r#"
version = 3

[[package]]
name = "h2"
version = "0.3.17"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#
    .parse()
    .expect("lock file");
    let report = Report::generate(&snapshot(), &lockfile, &settings(ignored()));
    let ids: Vec<String> = report.vulnerabilities.list.iter().map(|v| v.advisory.id.to_string()).collect();
    assert!(ids.contains(&"RUSTSEC-2024-0003".to_owned()), "found {ids:?}");
}
