//! Architecture invariants that can be checked by reading the tree (as
//! rust-analyzer's tidy tests do): which module may import which, and what
//! the engine crate may depend on. They fail with the offending path, so a
//! change that breaks the shape says where.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every module of this crate, as `a::b`, with its source.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            let name = path.file_stem().and_then(|s| s.to_str()).expect("a UTF-8 name").to_owned();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                if !matches!(name.as_str(), "mod" | "lib" | "main") {
                    p.push(name);
                }
                out.insert(p.join("::"), std::fs::read_to_string(&path).expect("a readable source file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root().join("src"), &[], &mut out);
    out
}

/// The module paths `source` (the module `module`) refers to through
/// `crate::` and `super::` paths, grouped imports included.
fn references(module: &str, source: &str) -> BTreeSet<Vec<String>> {
    let own: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let mut out = BTreeSet::new();
    for (start, anchor) in [("crate::", Vec::new()), ("super::", own[..own.len().saturating_sub(1)].to_vec())] {
        let mut rest = source;
        while let Some(i) = rest.find(start) {
            let preceded_by_ident =
                i > 0 && (rest.as_bytes()[i - 1].is_ascii_alphanumeric() || rest.as_bytes()[i - 1] == b'_');
            rest = &rest[i + start.len()..];
            if preceded_by_ident {
                continue;
            }
            let mut path = anchor.clone();
            let mut tail = rest;
            loop {
                let len = tail.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(tail.len());
                if len == 0 {
                    break;
                }
                path.push(tail[..len].to_owned());
                tail = &tail[len..];
                match tail.strip_prefix("::") {
                    Some(t) => tail = t,
                    None => break,
                }
            }
            // `crate::a::{b, c::d}`: each item names a path under `a`.
            if let Some(group) = tail.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let first = item.trim().split("::").next().unwrap_or_default().trim();
                    if !first.is_empty() && first != "self" {
                        let mut p = path.clone();
                        p.push(first.to_owned());
                        out.insert(p);
                    }
                }
            }
            out.insert(path);
        }
    }
    out
}

/// The longest known module a path names (`crate::pipeline::clock::Clock`
/// is the module `pipeline::clock`).
fn resolve(path: &[String], known: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| known.contains_key(m))
}

fn is_ancestor(a: &str, b: &str) -> bool {
    a.is_empty() || b.starts_with(&format!("{a}::"))
}

/// Module -> modules it imports, leaving out its own ancestors and
/// descendants (a parent declares its children; a child may use what its
/// parent re-exports).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    known
        .iter()
        .map(|(module, source)| {
            let deps = references(module, source)
                .iter()
                .filter_map(|p| resolve(p, &known))
                .filter(|d| d != module && !is_ancestor(d, module) && !is_ancestor(module, d))
                .collect();
            (module.clone(), deps)
        })
        .collect()
}

/// A cycle through `start`, if the graph has one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn dfs(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if dfs(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    dfs(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

/// The top-level module (`pipeline` for `pipeline::processor`).
fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or_default()
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = import_graph();
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            panic!("import cycle: {} -> {module}", cycle.join(" -> "));
        }
    }
    // The same at the level of the top-level modules (directories).
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, deps) in &graph {
        let entry = tops.entry(top(module).to_owned()).or_default();
        entry.extend(deps.iter().map(|d| top(d).to_owned()).filter(|d| d != top(module) && !d.is_empty()));
    }
    tops.remove("");
    for module in tops.keys() {
        if let Some(cycle) = cycle_through(&tops, module) {
            panic!("import cycle between top-level modules: {} -> {module}", cycle.join(" -> "));
        }
    }
}

#[test]
fn connectors_and_the_shell_import_only_downwards() {
    let graph = import_graph();
    let forbidden: &[(&str, &str, &str)] = &[
        ("client", "appservice", "client mode shares code with the appservice only through matrix/ and pipeline/"),
        ("appservice", "client", "the appservice shares code with client mode only through matrix/ and pipeline/"),
        ("config", "engine", "the configuration is the shell's; the engine gets its EngineConfig from app/"),
        ("pipeline", "matrix", "the pipeline carries effects out through the Performer trait, not a client"),
        ("pipeline", "appservice", "the pipeline serves both connectors"),
        ("pipeline", "client", "the pipeline serves both connectors"),
        ("store", "pipeline", "the store persists; it does not drive"),
        ("matrix", "appservice", "matrix/ is below both connectors"),
        ("matrix", "client", "matrix/ is below both connectors"),
    ];
    for (module, deps) in &graph {
        for (from, to, why) in forbidden {
            let bad = deps.iter().find(|d| top(d) == *to);
            if top(module) == *from
                && let Some(d) = bad
            {
                panic!("{module} imports {d}: {why}");
            }
        }
        // The composition root is at the top: nothing below imports it.
        if let Some(d) = deps.iter().find(|d| top(d) == "app")
            && top(module) != "app"
        {
            panic!("{module} imports {d}: app/ is the composition root, and nothing below it may import it");
        }
    }
    let config = std::fs::read_to_string(root().join("src/config.rs")).expect("src/config.rs");
    assert!(!config.contains("gatekeeper_engine"), "config.rs names the engine crate");
}

#[test]
fn the_engine_crate_depends_on_nothing_that_does_io() {
    // Read from Cargo.lock: every package the engine can reach, whatever
    // features a build turns on (a superset of `cargo tree`).
    let text = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let lock: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("Cargo.lock is not TOML: {}", e.message()));
    let packages = lock["package"].as_array().expect("packages");
    let deps_of = |name: &str| -> Vec<String> {
        packages
            .iter()
            .filter(|p| p["name"].as_str() == Some(name))
            .flat_map(|p| p.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default())
            .filter_map(|d| d.as_str().map(|s| s.split(' ').next().unwrap_or(s).to_owned()))
            .collect()
    };
    let mut reached = BTreeSet::new();
    let mut todo = vec!["gatekeeper-engine".to_owned()];
    while let Some(p) = todo.pop() {
        for d in deps_of(&p) {
            if reached.insert(d.clone()) {
                todo.push(d);
            }
        }
    }
    assert!(reached.contains("ruma-common"), "the walk reaches the engine's dependencies: {reached:?}");
    for io in ["tokio", "sled", "reqwest", "axum", "hyper", "matrix-sdk", "lettre", "mio"] {
        assert!(!reached.contains(io), "the engine crate reaches {io}: it must stay free of I/O");
    }
}

#[test]
fn the_tidy_reader_sees_imports_in_all_their_forms() {
    let known: BTreeMap<String, String> =
        ["a", "a::x", "b", "b::y", "c"].iter().map(|m| (m.to_string(), String::new())).collect();
    let refs =
        references("b::y", "use crate::a::{x, Thing};\nuse super::Other; fn f() { crate::c::g(); my_crate::a::h(); }");
    let resolved: BTreeSet<String> = refs.iter().filter_map(|p| resolve(p, &known)).collect();
    assert_eq!(resolved, ["a", "a::x", "b", "c"].iter().map(|s| s.to_string()).collect());
}

#[test]
fn the_readme_documents_every_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let table: Vec<&str> = readme.lines().filter(|l| l.trim_start().starts_with("| `")).collect();
    for spec in crate::engine::commands::ALL {
        let documented = table.iter().any(|row| {
            let first_cell = row.trim_start().trim_start_matches('|').split(" | ").next().unwrap_or_default();
            first_cell.contains(&format!("`{}", spec.name))
        });
        assert!(documented, "README.md's command table has no row for `{}`", spec.name);
    }
}
