//! The house rules of `src/`, checked on the source text: the domain
//! imports no transport or storage crate and no outer layer, no file of
//! the domain imports a file that imports it (directly or round a longer
//! loop), and the domain's top level stays a handful of files. A rule
//! written only in docs/ARCHITECTURE.md would drift; this one fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/domain/login/service.rs` is
/// `["domain", "login", "service"]`, `src/domain/login/mod.rs` is
/// `["domain", "login"]`.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(source_root()).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The text of every `use` item of a file (up to its `;`), code before
/// the first `#[cfg(test)]` only: test modules may reach anywhere.
fn use_items(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut items = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find("use ") {
        let at_line_start = rest[..start]
            .rsplit('\n')
            .next()
            .is_some_and(|line| line.trim().is_empty() || line.trim() == "pub");
        let tail = &rest[start + 4..];
        let Some(end) = tail.find(';') else { break };
        if at_line_start {
            items.push(tail[..end].split_whitespace().collect::<String>());
        }
        rest = &tail[end..];
    }
    items
}

/// Expands `a::{b::C, d}` into `a::b::C` and `a::d`, at any depth.
fn expand(item: &str) -> Vec<String> {
    let Some(open) = item.find('{') else {
        return vec![item.to_owned()];
    };
    let prefix = &item[..open];
    let inner = &item[open + 1..item.rfind('}').unwrap_or(item.len())];
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[from..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// The module a `use` path names, made absolute (`crate::` dropped).
/// `self` is the file's own module and `super` its parent, whether the file
/// is a `mod.rs` (its folder's module) or a plain file.
fn absolute(path: &str, module: &[String]) -> Option<Vec<String>> {
    let mut segments = path.split(" as ").next()?.split("::");
    let mut base: Vec<String> = match segments.next()? {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    for segment in segments {
        match segment {
            "super" => {
                base.pop();
            }
            "self" => {}
            name => base.push(name.to_owned()),
        }
    }
    Some(base)
}

struct Domain {
    /// File module path → the file modules it imports.
    imports: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    /// File module path → its `use` items, for the layer rules.
    items: BTreeMap<Vec<String>, Vec<String>>,
}

fn domain() -> Domain {
    let mut files = Vec::new();
    rust_files(&source_root().join("domain"), &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut imports = BTreeMap::new();
    let mut all_items = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        let source = std::fs::read_to_string(file).unwrap();
        let items: Vec<String> = use_items(&source).iter().flat_map(|i| expand(i)).collect();
        let mut targets = BTreeSet::new();
        for item in &items {
            let Some(mut path) = absolute(item, &module) else {
                continue;
            };
            // The longest prefix that is a file is what is imported.
            while !path.is_empty() && !modules.contains(&path) {
                path.pop();
            }
            if !path.is_empty() && path != module {
                targets.insert(path);
            }
        }
        imports.insert(module.clone(), targets);
        all_items.insert(module, items);
    }
    Domain {
        imports,
        items: all_items,
    }
}

#[test]
fn the_domain_imports_no_transport_storage_or_outer_layer() {
    let forbidden = [
        "tonic", "prost", "sea_orm", "sqlx", "axum", "http", "hyper", "tower",
    ];
    let outer = ["grpc", "store", "app", "config", "metrics", "telemetry"];
    for (module, items) in domain().items {
        for item in items {
            let first = item.split("::").next().unwrap_or_default();
            assert!(
                !forbidden.contains(&first),
                "{} imports {item}",
                module.join("::")
            );
            if let Some(rest) = item.strip_prefix("crate::") {
                let layer = rest.split("::").next().unwrap_or_default();
                assert!(
                    !outer.contains(&layer),
                    "{} imports {item}",
                    module.join("::")
                );
            }
        }
    }
}

#[test]
fn no_file_of_the_domain_imports_a_file_that_imports_it() {
    let imports = domain().imports;
    assert!(
        imports.len() > 30,
        "the scan found too few files: {imports:?}"
    );
    // Depth-first search for a loop, reporting the first one found.
    fn visit(
        module: &Vec<String>,
        imports: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(start) = path.iter().position(|m| m == module) {
            let cycle: Vec<String> = path[start..]
                .iter()
                .chain([module])
                .map(|m| m.join("::"))
                .collect();
            panic!("import cycle: {}", cycle.join(" → "));
        }
        path.push(module.clone());
        for next in imports.get(module).into_iter().flatten() {
            visit(next, imports, path, done);
        }
        path.pop();
        done.insert(module.clone());
    }
    let mut done = BTreeSet::new();
    for module in imports.keys() {
        visit(module, &imports, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_domain_top_level_is_a_handful_of_files() {
    let top: Vec<String> = std::fs::read_dir(source_root().join("domain"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert!(top.len() <= 3, "{top:?}");
}

#[test]
fn the_import_scanner_reads_what_it_should() {
    let items = use_items("use a::b;\npub use super::{c::D, e::{F, G}};\n// use not::this;\n");
    let expanded: Vec<String> = items.iter().flat_map(|i| expand(i)).collect();
    assert_eq!(
        expanded,
        ["a::b", "super::c::D", "super::e::F", "super::e::G"]
    );
    let module = vec![
        "domain".to_owned(),
        "login".to_owned(),
        "service".to_owned(),
    ];
    assert_eq!(
        absolute("super::model::Usage", &module).unwrap(),
        ["domain", "login", "model", "Usage"]
    );
    let folder = vec!["domain".to_owned(), "login".to_owned()];
    assert_eq!(
        absolute("super::shared::time", &folder).unwrap(),
        ["domain", "shared", "time"]
    );
    assert_eq!(
        absolute("crate::domain::audit::event::AuditEvent", &module).unwrap(),
        ["domain", "audit", "event", "AuditEvent"]
    );
}
