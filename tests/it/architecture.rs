//! The house rules of `src/`, checked on the source text: every layer
//! names only the layers the table in docs/ARCHITECTURE.md allows it; the domain
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

/// docs/ARCHITECTURE.md's layer table: each top-level module of `src/`
/// and the layers it may name (`crate::…`, or `latchkey::…` from the
/// binary). A module not in the table fails until it is given a row.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "main",
        &[
            "app",
            "config",
            "domain",
            "scan_cli",
            "telemetry",
            "watch_cli",
        ],
    ),
    ("lib", &[]),
    (
        "app",
        &[
            "adapters",
            "config",
            "domain",
            "grpc",
            "metrics",
            "store",
            "transport",
        ],
    ),
    (
        "config",
        &["adapters", "domain", "grpc", "store", "transport"],
    ),
    ("telemetry", &["config"]),
    ("grpc", &["domain", "metrics", "transport"]),
    ("adapters", &["domain", "metrics", "transport"]),
    ("transport", &["domain"]),
    ("metrics", &["domain"]),
    ("watch_cli", &["app", "domain", "grpc"]),
    ("scan_cli", &["domain"]),
    ("domain", &[]),
    ("store", &["domain"]),
];

/// Every layer a file's code names, outside comments and its tests.
fn layers_named(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut named = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for prefix in ["crate::", "latchkey::"] {
            for (at, _) in line.match_indices(prefix) {
                let before = line[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let layer: String = line[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !layer.is_empty() {
                    named.insert(layer);
                }
            }
        }
    }
    named
}

#[test]
fn every_layer_imports_only_what_the_layer_table_allows() {
    let mut files = Vec::new();
    rust_files(&source_root(), &mut files);
    let table: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut checked = 0;
    for file in &files {
        let module = module_of(file);
        let layer = module[0].as_str();
        let allowed = table.get(layer).unwrap_or_else(|| {
            panic!("src/{layer} has no row in the layer table (LAYERS, docs/ARCHITECTURE.md)")
        });
        let source = std::fs::read_to_string(file).unwrap();
        for named in layers_named(&source) {
            assert!(
                named == layer || allowed.contains(&named.as_str()),
                "{} names {named}, which the layer table does not allow {layer}",
                file.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 80, "the scan found too few files: {checked}");
}

#[test]
fn the_layer_scanner_skips_comments_tests_and_longer_names() {
    let source = "use crate::domain::x;\n// crate::store in a comment\nlet a = mycrate::grpc;\nlatchkey::app::run();\n#[cfg(test)]\nuse crate::store;\n";
    assert_eq!(
        layers_named(source).into_iter().collect::<Vec<_>>(),
        ["app", "domain"]
    );
}
