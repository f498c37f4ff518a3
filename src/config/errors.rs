//! A configuration error as an operator reads it: which setting, where
//! (a file by its absolute path and line, or the environment variable by
//! its name), what is wrong, and for a misspelt name the nearest right one.
//! figment's own text says `unknown field: found `lisen`, expected `one of
//! `listen`, …`` for key "default.lisen" in ../bad.toml`: nested
//! backticks, its profile's name, the path as given, and no line.

use std::path::Path;

use figment::error::{Error, Kind};
use figment::Source;

use super::ENV_PREFIX;

/// Every error `error` holds, one per line.
pub fn describe(error: &Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|one| describe_one(&one))
        .collect::<Vec<_>>()
        .join("\n")
}

fn describe_one(error: &Error) -> String {
    let key = error.path.join(".");
    let place = place(error);
    let what = match &error.kind {
        Kind::UnknownField(found, expected) => {
            let section = &error.path[..error.path.len().saturating_sub(1)];
            let name = section
                .iter()
                .map(|part| part.to_ascii_lowercase())
                .chain([found.to_ascii_lowercase()])
                .collect::<Vec<_>>()
                .join(".");
            let mut said = format!("unknown setting `{name}`");
            if let Some(near) = nearest(found, expected) {
                said.push_str(&format!(" (did you mean `{near}`?)"));
            }
            if expected.is_empty() {
                said.push_str(": this section takes no settings");
            } else {
                said.push_str(&format!(
                    "; {} takes: {}",
                    if section.is_empty() {
                        "the top level".to_owned()
                    } else {
                        format!("[{}]", section.join(".").to_ascii_lowercase())
                    },
                    expected.join(", ")
                ));
            }
            said
        }
        Kind::Message(message) if key.is_empty() => message.clone(),
        other => format!("{key}: {}", plain(&other.to_string())),
    };
    match place {
        Some(place) => format!("{place}: {what}"),
        None => what,
    }
}

/// Where the value came from: `FILE:LINE` (absolute), or the variable.
fn place(error: &Error) -> Option<String> {
    let metadata = error.metadata.as_ref()?;
    match &metadata.source {
        Some(Source::File(path)) => {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let line = error
                .path
                .last()
                .and_then(|key| line_of(&absolute, &error.path[..error.path.len() - 1], key));
            Some(match line {
                Some(line) => format!("{}:{line}", absolute.display()),
                None => absolute.display().to_string(),
            })
        }
        _ if metadata.name.contains("environment") => {
            let name = format!(
                "{ENV_PREFIX}{}",
                error
                    .path
                    .iter()
                    .map(|part| part.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join("__")
            );
            Some(format!("environment variable {name}"))
        }
        _ => None,
    }
}

/// The line (1-based) where `key` is set under the table `section` in
/// the TOML file at `path`, as far as a plain reading finds it: a line
/// `key = …` after the header `[section]` (or before any header, at the
/// top level).
fn line_of(path: &Path, section: &[String], key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    let wanted = section.join(".");
    let mut current = String::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            current = header.trim_end_matches(']').trim().to_owned();
            continue;
        }
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim().trim_matches('"');
        if current == wanted && name == key {
            return Some(number + 1);
        }
        // A dotted key at the top level (`database.max_connections = 4`).
        if current.is_empty() && !wanted.is_empty() && name == format!("{wanted}.{key}") {
            return Some(number + 1);
        }
    }
    None
}

/// The expected name nearest to `found`, if one is near: at most two
/// edits, or a third of its length.
fn nearest<'a>(found: &str, expected: &[&'a str]) -> Option<&'a str> {
    let bound = 2.max(found.len() / 3);
    expected
        .iter()
        .map(|candidate| (distance(found, candidate), *candidate))
        .filter(|(edits, _)| *edits <= bound)
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein's distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// figment's words for a kind, without its nested backticks.
fn plain(text: &str) -> String {
    text.replace("``", "`").replace("`one of ", "one of ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_name_is_offered_only_when_near() {
        let names = ["listen", "log", "database"];
        assert_eq!(nearest("lisen", &names), Some("listen"));
        assert_eq!(nearest("databse", &names), Some("database"));
        assert_eq!(nearest("colour", &names), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's type
    fn a_typo_in_a_file_is_named_with_its_absolute_path_and_line() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                "listen = \"127.0.0.1:1\"\n\n[database]\nmax_conections = 3\n",
            )?;
            let error = crate::config::Config::load(
                Some(Path::new("bad.toml")),
                crate::config::Overrides::default(),
            )
            .unwrap_err();
            let said = describe(&error);
            let file = jail.directory().join("bad.toml");
            assert_eq!(
                said.lines().next().unwrap(),
                format!(
                    "{}:4: unknown setting `database.max_conections` (did you mean \
                     `max_connections`?); [database] takes: max_connections, acquire_timeout, \
                     acquire_timeout_ms, sqlite_busy_timeout, sqlite_busy_timeout_ms, \
                     sqlite_mmap_mib, sqlite_cache_mib, health_check_interval, \
                     health_check_interval_ms, feed_numbering",
                    file.display()
                )
            );
            assert!(!said.contains("default."), "{said}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's type
    fn a_typo_in_the_environment_names_the_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LATCHKEY_DATABASE__MAX_CONECTIONS", "3");
            let error =
                crate::config::Config::load(None, crate::config::Overrides::default()).unwrap_err();
            let said = describe(&error);
            assert!(
                said.starts_with(
                    "environment variable LATCHKEY_DATABASE__MAX_CONECTIONS: unknown setting \
                     `database.max_conections` (did you mean `max_connections`?)"
                ),
                "{said}"
            );
            Ok(())
        });
    }
}
