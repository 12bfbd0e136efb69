//! The house rules about layering, checked rather than hoped for: the core
//! crate pulls in no I/O crate, not even through a dependency of a
//! dependency, and no module imports from a sibling that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates whose presence in the core would mean it does I/O or runs tasks.
const IO_CRATES: &[&str] = &["tokio", "axum", "tonic", "sqlx", "hyper", "mio", "reqwest", "tower"];

/// Every package `name` depends on, transitively, read from Cargo.lock (the
/// graph cargo actually builds, features included).
fn transitive_dependencies(lock: &toml::Table, name: &str) -> BTreeSet<String> {
    let packages = lock["package"].as_array().expect("Cargo.lock lists packages");
    let deps_of = |package: &str| -> Vec<String> {
        packages
            .iter()
            .filter(|p| p["name"].as_str() == Some(package))
            .flat_map(|p| p.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default())
            // An entry is "name" or "name version" when two versions are locked.
            .filter_map(|d| d.as_str().and_then(|s| s.split(' ').next()).map(str::to_owned))
            .collect()
    };
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        for dep in deps_of(&next) {
            if seen.insert(dep.clone()) {
                todo.push(dep);
            }
        }
    }
    seen
}

#[test]
fn the_core_crate_depends_on_no_io_crate_even_indirectly() {
    let lock: toml::Table = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
        .expect("Cargo.lock")
        .parse()
        .expect("Cargo.lock is TOML");
    let core = transitive_dependencies(&lock, "tcplab-core");
    assert!(core.contains("serde"), "the lock file was read: {core:?}");
    let io: Vec<_> = IO_CRATES.iter().filter(|c| core.contains(**c)).collect();
    assert!(io.is_empty(), "tcplab-core depends on {io:?}");
    // The server, for contrast, does: the check can fail.
    let server = transitive_dependencies(&lock, "tcplab");
    assert!(server.contains("tokio") && server.contains("tcplab-core"));
}

/// The top-level module (under `crate::`) each `.rs` file of `src` belongs to,
/// mapped to the set of top-level modules it names with `crate::`.
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative.components().next().expect("a component").as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        let imports = graph.entry(module.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            // `tcplab_core::x` ends in "core::x", not "crate::"; `$crate::` is a macro's.
            if text[..at].ends_with('$') {
                continue;
            }
            let rest = &text[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                imports.insert(name);
            }
        }
        // A grouped `use crate::{a, b::c}` names several.
        for (at, _) in text.match_indices("crate::{") {
            let rest = &text[at + "crate::{".len()..];
            let group = &rest[..rest.find('}').unwrap_or(rest.len())];
            for item in group.split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != module {
                    imports.insert(name);
                }
            }
        }
    }
    graph
}

fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (a, uses) in graph {
        for b in uses {
            if a < b && graph.get(b).is_some_and(|back| back.contains(a)) {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

#[test]
fn no_top_level_module_of_the_core_imports_from_one_that_imports_it_back() {
    let graph = module_imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("core/src"));
    assert!(graph.contains_key("engine") && graph["sim"].contains("engine"), "the graph was read: {graph:?}");
    assert_eq!(cycles(&graph), Vec::<(String, String)>::new(), "{graph:#?}");
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycles(&graph), vec![("a".to_owned(), "b".to_owned())]);
}

#[test]
fn no_top_level_module_of_the_server_imports_from_one_that_imports_it_back() {
    let graph = module_imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph["api"].contains("service"), "the graph was read: {graph:?}");
    assert_eq!(cycles(&graph), Vec::<(String, String)>::new(), "{graph:#?}");
}

/// What would make the core read the wall clock, the file system, the
/// environment or a socket behind its callers' back.
const AMBIENT_IO: &[&str] =
    &["std::fs", "std::time::Instant", "SystemTime", "std::net::Tcp", "std::net::Udp", "std::env", "std::process"];

#[test]
fn the_core_reads_no_clock_file_socket_or_environment_itself() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("core/src"), &mut files);
    assert!(files.len() > 20, "the core's sources were read: {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a source file");
        // Unit tests may use the disk (a temporary lab file, say); the library may not.
        let library = text.split("#[cfg(test)]").next().unwrap_or_default();
        let is_test_file = file.file_name().is_some_and(|n| n == "tests.rs");
        for needle in AMBIENT_IO {
            if !is_test_file && library.contains(needle) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert_eq!(found, Vec::<String>::new(), "the core takes time and text from its caller");
}
