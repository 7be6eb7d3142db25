//! The fuzz targets (see fuzz/) run briefly on every `cargo test`: each
//! seed of fuzz/corpus/<target>/ as it is, then a few thousand random
//! mutations of the seeds (bytes flipped, inserted, deleted, spliced). Any
//! input a fuzzer finds a bug with belongs in the corpus afterwards.
//! `GK_FUZZ_ROUNDS=<n>` runs longer; `GK_FUZZ_SEED=<n>` replays a run.

use std::path::Path;

use crate::support::rng::Rng;

/// Bytes fuzzers like: structure characters and boundaries of the formats.
const INTERESTING: &[u8] = b"{}[]\":,\\\r\n\t <>&'@!$#*:.0\xff\xfe\x00";

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            1 => data.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < data.len() => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let piece = other[from..(from + rng.below(32)).min(other.len())].to_vec();
                data.splice(at..at, piece);
            }
            _ => data.insert(at, rng.next() as u8),
        }
    }
    data
}

fn run(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.push(Vec::new());
    for seed in &seeds {
        f(seed);
    }
    let rounds: usize = std::env::var("GK_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2000);
    let (mut rng, seed) = Rng::from_env("GK_FUZZ_SEED");
    for round in 0..rounds {
        let input = mutate(&mut rng, &seeds);
        let outcome = std::panic::catch_unwind(|| f(&input));
        if outcome.is_err() {
            panic!("{target}: round {round} (rng seed {seed}) failed on input {:?}", String::from_utf8_lossy(&input));
        }
    }
}

#[test]
fn transaction_bodies() {
    run("transaction", gatekeeper::fuzz_targets::transaction);
}

#[test]
fn commands() {
    run("command", gatekeeper::fuzz_targets::command);
}

#[test]
fn digest_rendering() {
    run("digest", gatekeeper::fuzz_targets::digest);
}

#[test]
fn email_headers() {
    run("email", gatekeeper::fuzz_targets::email);
}

#[test]
fn config_files() {
    run("config", gatekeeper::fuzz_targets::config);
}
