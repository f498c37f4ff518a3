//! A database URL, which may embed a password: `Debug` and `redacted`
//! hide it (in the user-info part and in secret query parameters, however
//! they are spelled or percent-encoded), and `Scrubber` removes it from
//! driver errors that quote it; only `expose` shows it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::shared::percent;

/// A database URL. It may embed a password, so `Debug` and
/// [`DatabaseUrl::redacted`] hide it; only [`DatabaseUrl::expose`] shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether this is an SQLite database, as the store tells it.
    pub fn is_sqlite(&self) -> bool {
        crate::store::is_sqlite(&self.0)
    }

    /// The URL with every password-bearing part replaced by `*****`: the
    /// password of the user part, and the value of every query parameter
    /// whose name (in any letter case, percent-encoded or not) says it holds
    /// a secret (`password`, `sslpassword`, `PASSWORD`, `passwd`, `pwd`,
    /// `secret`, `token`).
    ///
    /// The user part ends at the last `@` after the scheme, so a password
    /// with an unescaped `/`, `?` or `@` in it is still hidden whole (at
    /// worst, more than the password is hidden).
    pub fn redacted(&self) -> String {
        let parts = UrlParts::of(&self.0);
        let mut shown = parts.scheme.to_owned();
        if let Some(user) = parts.user {
            shown.push_str(user);
            if parts.password.is_some() {
                shown.push_str(":*****");
            }
            shown.push('@');
        }
        shown.push_str(parts.location);
        if let Some(query) = parts.query {
            shown.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_parameter(name) => format!("{name}=*****"),
                    _ => pair.to_owned(),
                })
                .collect();
            shown.push_str(&pairs.join("&"));
        }
        shown
    }

    /// `text` (an error message, a log line) with every secret of this URL
    /// in it replaced by `*****`: as written, percent-decoded, and escaped
    /// the way JSON and `Debug` formatting escape it.
    pub fn scrub(&self, text: &str) -> String {
        self.scrubber().scrub(text)
    }

    /// The secrets found once, for scrubbing many texts (every log line).
    pub fn scrubber(&self) -> Scrubber {
        Scrubber(
            self.secrets()
                .into_iter()
                .filter(|secret| secret.len() >= 2)
                .collect(),
        )
    }

    /// The secret values inside the URL, in every form they may be printed
    /// in, longest first.
    fn secrets(&self) -> Vec<String> {
        let parts = UrlParts::of(&self.0);
        let mut raw: Vec<String> = parts.password.map(str::to_owned).into_iter().collect();
        for pair in parts.query.unwrap_or_default().split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                if is_secret_parameter(name) {
                    raw.push(value.to_owned());
                }
            }
        }
        let mut secrets = Vec::new();
        for secret in raw {
            let decoded = percent_decode(&secret);
            for form in [&secret, &decoded] {
                secrets.push(form.clone());
                secrets.push(form.escape_debug().to_string());
                secrets.push(form.replace('\\', "\\\\").replace('"', "\\\""));
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        secrets
    }
}

/// The query parameters the PostgreSQL driver (sqlx 0.8) reads. It warns
/// about any other and goes on without it; libpq's are many, and some
/// change what "connected" means (`target_session_attrs`,
/// `load_balance_hosts`), so an unread one is refused instead.
const POSTGRES_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The query parameters the MySQL/MariaDB driver reads; it ignores any
/// other without a word.
const MYSQL_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslca",
    "ssl-ca",
    "charset",
    "collation",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "socket",
    "timezone",
    "time-zone",
];

impl DatabaseUrl {
    /// Refuses, before anything connects, what the drivers would take
    /// silently and do something else with (issue 23):
    /// - several hosts (`postgres://a,b/db`, `host=a,b`): latchkey connects
    ///   to one address and does not choose a writable server among many;
    ///   it wants one stable address that follows the primary
    ///   (docs/deploy.md, "Failover");
    /// - a parameter the driver does not read, `target_session_attrs`
    ///   first among them, which the PostgreSQL driver would ignore with a
    ///   warning; SQLite's driver already refuses unknown parameters.
    ///
    /// The refusal names the parameter, never its value.
    pub fn check(&self) -> Result<(), String> {
        // The scheme as sea-orm and sqlx take it: up to the first `:`.
        let scheme = self.0.split(':').next().unwrap_or_default();
        let (known, server) = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => (POSTGRES_PARAMETERS, "PostgreSQL"),
            "mysql" => (MYSQL_PARAMETERS, "MySQL"),
            _ => return Ok(()),
        };
        let several = || {
            let postgres = server == "PostgreSQL";
            format!(
                "names several hosts; latchkey connects to one address and does not choose \
                 the writable one among many{}: give it one address that follows the primary \
                 ({}; docs/deploy.md, \"Failover\"). Connected to a read-only server, latchkey \
                 reports NOT_SERVING and refuses writes with STORAGE_READ_ONLY",
                if postgres {
                    " (as libpq's target_session_attrs would)"
                } else {
                    ""
                },
                if postgres {
                    "a moving address, Patroni's proxy, or pgbouncer in session mode"
                } else {
                    "a moving address or a proxy"
                },
            )
        };
        // Read as the drivers read it (the `url` crate): the authority ends
        // at the first `/`, `?` or `#`, so an `@` in the query is the
        // query's. A URL the drivers cannot read is refused by them too;
        // one with a comma in its authority is most likely a host list.
        let url = match url::Url::parse(&self.0) {
            Ok(url) => url,
            Err(_) => {
                let rest = self.0.split_once("//").map_or("", |(_, rest)| rest);
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if authority.contains(',') {
                    return Err(several());
                }
                return Err(format!(
                    "cannot be read as a {server} URL: scheme://user:password@host:port/database, \
                     or for a Unix socket scheme:///database?host=/run/dir&user=name"
                ));
            }
        };
        if url.host_str().is_some_and(|host| host.contains(',')) {
            return Err(several());
        }
        for (name, value) in url.query_pairs() {
            let read = known.contains(&name.as_ref())
                || (server == "PostgreSQL" && name.starts_with("options[") && name.ends_with(']'));
            if read {
                if ["host", "hostaddr", "port"].contains(&name.as_ref()) && value.contains(',') {
                    return Err(several());
                }
                continue;
            }
            if value.is_empty() {
                // Perhaps the rest of a value with an unescaped `&` in it,
                // a password's: not named.
                return Err(
                    "has a query parameter with no value that the database driver does \
                            not read (an unescaped `&` inside a value?): it would be ignored, \
                            so it is refused"
                        .to_owned(),
                );
            }
            let why = if name == "target_session_attrs" || name == "load_balance_hosts" {
                several()
            } else {
                "is not one the database driver reads; it would be ignored, so it is refused \
                 (README, \"Configuration\")"
                    .to_owned()
            };
            return Err(self.scrub(&format!("parameter `{}` {why}", name.escape_debug())));
        }
        Ok(())
    }
}

/// Replaces a URL's secrets, in every form, by `*****`.
#[derive(Clone)]
pub struct Scrubber(Vec<String>);

impl Scrubber {
    pub fn scrub(&self, text: &str) -> String {
        let mut scrubbed = text.to_owned();
        for secret in &self.0 {
            if scrubbed.contains(secret.as_str()) {
                scrubbed = scrubbed.replace(secret.as_str(), "*****");
            }
        }
        scrubbed
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} secrets)", self.0.len())
    }
}

/// A database URL cut into the parts redaction needs.
struct UrlParts<'a> {
    /// Up to and including `://` (or nothing).
    scheme: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    /// Host, port and path.
    location: &'a str,
    query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    fn of(url: &'a str) -> Self {
        let (scheme, rest) = match url.find("://") {
            Some(at) => url.split_at(at + 3),
            None => ("", url),
        };
        // Where the user part ends. A URL the drivers can read ends its
        // authority at the first `/`, `?` or `#` (so an `@` in the query is
        // the query's); one they cannot, most likely a password with an
        // unescaped `/`, `?` or `@`, ends it at the last `@`, so that such a
        // password is still hidden whole.
        let searched = if url::Url::parse(url).is_ok() {
            rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end])
        } else {
            rest
        };
        let (userinfo, after) = match searched.rfind('@') {
            Some(at) if !scheme.is_empty() => (Some(&rest[..at]), &rest[at + 1..]),
            _ => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(user), Some(password)),
                None => (Some(info), None),
            },
            None => (None, None),
        };
        let (location, query) = match after.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (after, None),
        };
        Self {
            scheme,
            user,
            password,
            location,
            query,
        }
    }
}

/// Whether a URL query parameter carries a secret, by its name.
fn is_secret_parameter(name: &str) -> bool {
    let name = percent_decode(name).to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
}

/// `%XX` escapes (and `+`) decoded; anything malformed is kept as it is.
fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&percent::decode(text)).into_owned()
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        let url = DatabaseUrl::new(
            "postgres://latchkey:s3cret@db.internal:5432/latchkey?sslmode=require",
        );
        assert_eq!(
            url.redacted(),
            "postgres://latchkey:*****@db.internal:5432/latchkey?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain = DatabaseUrl::new("sqlite://latchkey.db?mode=rwc");
        assert_eq!(plain.redacted(), "sqlite://latchkey.db?mode=rwc");
    }

    #[test]
    fn several_hosts_and_unread_parameters_are_refused() {
        let refused = |url: &str| DatabaseUrl::new(url).check().unwrap_err();
        for url in [
            "postgres://u@db1:5432,db2:5432/l",
            "postgresql://u@db1,db2/l",
            "postgres:///l?host=db1,db2",
            "postgres://u@db/l?port=5432%2C5433",
        ] {
            assert!(refused(url).contains("names several hosts"), "{url}");
        }
        let why = refused("postgres://u:s3cret@db/l?target_session_attrs=read-write");
        assert!(why.starts_with("parameter `target_session_attrs`"), "{why}");
        assert!(
            why.contains("one address that follows the primary"),
            "{why}"
        );
        assert!(
            !why.contains("s3cret") && !why.contains("read-write"),
            "{why}"
        );
        // An `@` in the query is the query's, as the drivers read it.
        assert_eq!(
            DatabaseUrl::new("postgres://db/l?user=svc@tenant&options[search_path]=app,public")
                .check(),
            Ok(())
        );
        let why = refused("postgres://db/l?user=svc@tenant&target_session_attrs=read-write");
        assert!(why.starts_with("parameter `target_session_attrs`"), "{why}");
        // Without `//`, still checked.
        assert!(refused("postgres:/l?target_session_attrs=any").contains("names several hosts"));
        // What the drivers cannot read either, said with the two forms.
        let why = refused("postgres://u@/l?host=/var/run/postgresql");
        assert!(why.contains("host=/run/dir&user=name"), "{why}");
        // The rest of a password cut by an unescaped `&` is never named.
        let why = refused("postgres://u@db/l?password=ab&cdSecret");
        assert!(
            !why.contains("cdSecret") && why.contains("no value"),
            "{why}"
        );
        let why = refused("mysql://root@db/t?sslmod=required");
        assert!(why.starts_with("parameter `sslmod` is not one"), "{why}");
        assert!(refused("postgres://u@db/l?connect_timeout=5").contains("connect_timeout"));
        for url in [
            "postgres://u:p@db:5432/l?sslmode=require&application_name=latchkey",
            "postgres:///l?host=/var/run/postgresql&user=u",
            "postgres://u@db/l?options[statement_timeout]=5s",
            "mysql://root@127.0.0.1:3306/test?ssl-mode=disabled",
            "sqlite://latchkey.db?mode=rwc",
            "sqlite::memory:",
        ] {
            assert_eq!(DatabaseUrl::new(url).check(), Ok(()), "{url}");
        }
    }

    /// A string as JSON (and `Debug`) print it inside quotes.
    fn serde_json_escape(text: &str) -> String {
        text.replace('\\', "\\\\").replace('"', "\\\"")
    }

    #[test]
    fn passwords_in_query_strings_are_redacted_in_any_case() {
        let url = DatabaseUrl::new(
            "postgres://u@db/l?sslmode=require&password=hunter2&PASSWORD=Hunter3&sslpassword=k%65y&Pass%77ord=x%2By&user=u",
        );
        let shown = url.redacted();
        assert_eq!(
            shown,
            "postgres://u@db/l?sslmode=require&password=*****&PASSWORD=*****&sslpassword=*****&Pass%77ord=*****&user=u"
        );
        for secret in ["hunter2", "Hunter3", "k%65y", "key", "x%2By", "x+y"] {
            assert!(!shown.contains(secret), "{secret}");
            assert!(!format!("{url:?}").contains(secret), "{secret}");
            let message = format!("cannot connect with {secret} to db");
            assert!(!url.scrub(&message).contains(secret), "{secret}");
        }
        let both = DatabaseUrl::new("mysql://root:s3cr%40t@db:3306/t?password=p4ss");
        assert_eq!(
            both.redacted(),
            "mysql://root:*****@db:3306/t?password=*****"
        );
        assert_eq!(
            both.scrub("auth failed for s3cr@t (s3cr%40t), p4ss"),
            "auth failed for ***** (*****), *****"
        );
        // Unescaped reserved characters in the password, and the escaped
        // forms JSON logs print (found by review).
        for (url, secret) in [
            ("postgres://app:pa/ss@db:5432/l", "pa/ss"),
            ("postgres://app:pa?ss@db:5432/l", "pa?ss"),
            ("postgres://app:a\\b\"c@db/l", "a\\b\"c"),
            ("postgres://u@db/l?password=p@ss", "p@ss"),
            ("postgres://u:pw@db/l?user=a@b&password=k3y", "k3y"),
        ] {
            let url = DatabaseUrl::new(url);
            assert!(!url.redacted().contains(secret), "{}", url.redacted());
            let json = serde_json_escape(secret);
            assert!(!url.scrub(&format!("x {json} y")).contains(&json), "{json}");
            assert!(!url.scrub(&format!("x {secret} y")).contains(secret));
        }
        let config = crate::config::Config {
            database_url: url,
            ..crate::config::Config::default()
        };
        assert!(!config.to_redacted_toml().contains("hunter2"));
    }
}
