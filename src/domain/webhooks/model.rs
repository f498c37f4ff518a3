//! What a webhook target is, what is sent to it and how it is signed: a
//! feed event as a CloudEvent 1.0 in JSON structured mode, signed as the
//! Standard Webhooks specification says.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::domain::audit::event::EventType;
use crate::domain::audit::feed::FeedEvent;
use crate::domain::shared::span::as_unit::secs;

/// The longest target name: it is a metric label and a database key.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest URL accepted.
pub const MAX_URL_CHARS: usize = 2048;
/// A request's timeout, at least and at most.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The first wait after a failed delivery; it doubles up to the target's
/// `max_backoff`, which is at least this and at most a day.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(86_400);
/// A signing key's bytes, at least and at most (Standard Webhooks: 24 to
/// 64 bytes).
pub const MIN_KEY_BYTES: usize = 24;
pub const MAX_KEY_BYTES: usize = 64;
/// The `Content-Type` of every delivery: CloudEvents' JSON structured mode.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// `[[webhooks]]`: one target the change feed is pushed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Unique; 1 to 64 of `a-z 0-9 _ -`. The metric label and the key of
    /// its cursor in the database: renaming a target starts a new cursor.
    pub name: String,
    /// `http://` or `https://` (verified against the system's roots).
    pub url: String,
    /// The feed's type names (as `latchkey watch --type` takes them); empty:
    /// every type in the feed.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// A file holding the signing secret, `whsec_` and base64 of 24 to 64
    /// random bytes.
    pub secret_file: PathBuf,
    /// How long one request may take, connecting included.
    #[serde(default = "default_timeout", with = "secs")]
    pub timeout: u64,
    /// The longest wait between two attempts.
    #[serde(default = "default_max_backoff", with = "secs")]
    pub max_backoff: u64,
}

fn default_timeout() -> u64 {
    10
}

fn default_max_backoff() -> u64 {
    300
}

impl WebhookTarget {
    /// Checks every field but the secret (read at start, with
    /// [`SigningKey::parse`]); each refusal names the field, as
    /// `webhooks[index].field`.
    pub fn check(&self, index: usize) -> Result<(), String> {
        let field = |name: &str| format!("webhooks[{index}].{name}");
        let name = &self.name;
        if name.is_empty()
            || name.len() > MAX_NAME_CHARS
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "{} must be 1 to {MAX_NAME_CHARS} of a-z, 0-9, _ and -, not {name:?}",
                field("name")
            ));
        }
        check_url(&self.url).map_err(|why| format!("{} {why}", field("url")))?;
        self.event_filter()
            .map_err(|why| format!("{} {why}", field("event_types")))?;
        let timeout = Duration::from_secs(self.timeout);
        if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
            return Err(format!(
                "{} must be from 1 s to 60 s, not {} s",
                field("timeout"),
                self.timeout
            ));
        }
        let max_backoff = Duration::from_secs(self.max_backoff);
        if !(FIRST_BACKOFF..=MAX_BACKOFF).contains(&max_backoff) {
            return Err(format!(
                "{} must be from 1 s to 1 day, not {} s",
                field("max_backoff"),
                self.max_backoff
            ));
        }
        Ok(())
    }

    /// The types it gets: those named, or every type in the feed.
    pub fn event_filter(&self) -> Result<Vec<EventType>, String> {
        if self.event_types.is_empty() {
            return Ok(EventType::ALL.into_iter().filter(|t| t.in_feed()).collect());
        }
        let mut types = Vec::new();
        for name in &self.event_types {
            match EventType::parse(name) {
                Some(t) if t.in_feed() => {
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
                _ => {
                    return Err(format!(
                    "names {name:?}, not a type of the change feed (see `latchkey watch --help`)"
                ))
                }
            }
        }
        Ok(types)
    }
}

/// An `http` or `https` URL with a host and no user or password in it.
fn check_url(text: &str) -> Result<url::Url, String> {
    if text.len() > MAX_URL_CHARS {
        return Err(format!("is longer than {MAX_URL_CHARS} characters"));
    }
    let url = url::Url::parse(text).map_err(|error| format!("is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be http:// or https://, not {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not hold a user or password: deliveries are signed with the secret_file's key"
                .to_owned(),
        );
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment (#…)".to_owned());
    }
    Ok(url)
}

/// A target as it is delivered to: its checked settings and its key.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub url: url::Url,
    pub event_types: Vec<EventType>,
    pub key: SigningKey,
    pub timeout: Duration,
    pub max_backoff: Duration,
}

impl Target {
    /// `config` checked, with the key read from its `secret_file`
    /// (`secret`: the file's text, which is never put in an error).
    pub fn new(config: &WebhookTarget, index: usize, secret: &str) -> Result<Self, String> {
        config.check(index)?;
        let key = SigningKey::parse(secret).map_err(|why| {
            format!(
                "webhooks[{index}].secret_file {} {why}",
                config.secret_file.display()
            )
        })?;
        Ok(Self {
            name: config.name.clone(),
            url: check_url(&config.url)?,
            event_types: config.event_filter()?,
            key,
            timeout: Duration::from_secs(config.timeout),
            max_backoff: Duration::from_secs(config.max_backoff),
        })
    }
}

/// A target's signing key: the bytes after `whsec_`, base64-decoded, held
/// as the keyed HMAC. Never shown: its Debug says only that it is there.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(redacted)")
    }
}

impl SigningKey {
    /// Reads `whsec_<base64>` (surrounding whitespace ignored). The error
    /// says what is wrong, never what the text was.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or("does not hold a Standard Webhooks secret: it must start with whsec_")?;
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| "holds a secret whose part after whsec_ is not base64")?,
        );
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(format!(
                "holds a secret of {} bytes; it must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes (head -c 32 /dev/urandom | base64)",
                bytes.len()
            ));
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&bytes)
            .map_err(|_| "holds a key HMAC-SHA256 cannot take")?;
        Ok(Self(mac))
    }

    /// `v1,` and base64 of HMAC-SHA256 of `{id}.{timestamp}.{body}`: the
    /// `webhook-signature` header's value.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The CloudEvents `type` of a feed event type: `dev.latchkey.`, the thing
/// it happened to, a dot, and what happened
/// (`app_password_revoked` → `dev.latchkey.app_password.revoked`).
pub fn cloud_event_type(event_type: EventType) -> String {
    const SUBJECTS: [&str; 6] = [
        "app_passwords_",
        "app_password_",
        "account_",
        "caller_",
        "tenant_",
        "primary_credential_",
    ];
    let name = event_type.as_str();
    let (subject, what) = SUBJECTS
        .iter()
        .find_map(|prefix| {
            name.strip_prefix(prefix)
                .map(|what| (prefix.trim_end_matches('_'), what))
        })
        .unwrap_or(("event", name));
    format!("dev.latchkey.{subject}.{what}")
}

/// One delivery: a feed event as its CloudEvent. The id is the same on
/// every attempt (and every replica): receivers dedupe by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `{feed id}-{seq}-{mark}`: the event's place in one history of one
    /// feed.
    pub id: String,
    pub seq: u64,
    /// The CloudEvent, as JSON.
    pub body: String,
}

/// The headers of one attempt: the body signed at `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    datacontenttype: &'static str,
    data: Data<'a>,
}

/// The event's fields, as WatchEvents shows them to a notifier (every
/// field; an event never holds a secret).
#[derive(Serialize)]
struct Data<'a> {
    seq: u64,
    event_type: &'static str,
    account: Option<&'a str>,
    app_password_id: Option<String>,
    actor: &'a str,
    actor_tenant: Option<&'a str>,
    caller: Option<&'a str>,
    client_ip: Option<String>,
    protocol: Option<&'static str>,
    item_count: Option<i64>,
    detail: &'a str,
}

impl Delivery {
    /// The CloudEvent of `event` in the feed `feed_id`.
    pub fn of(feed_id: &str, event: &FeedEvent) -> Result<Self, String> {
        let id = format!("{feed_id}-{}-{:016x}", event.seq, event.mark);
        let audit = &event.event;
        let account = audit.username.as_ref().map(|u| u.as_str());
        let cloud = CloudEvent {
            specversion: "1.0",
            id: &id,
            source: format!("/latchkey/feeds/{feed_id}"),
            event_type: cloud_event_type(audit.event_type),
            time: audit.at.to_rfc3339(),
            subject: account,
            datacontenttype: "application/json",
            data: Data {
                seq: event.seq,
                event_type: audit.event_type.as_str(),
                account,
                app_password_id: audit.app_password_id.map(|id| id.to_string()),
                actor: &audit.actor,
                actor_tenant: audit.actor_tenant.as_deref(),
                caller: audit.caller_name.as_deref(),
                client_ip: audit.client_ip.map(|ip| ip.to_string()),
                protocol: audit.protocol.map(|p| p.as_str()),
                item_count: audit.item_count,
                detail: &audit.detail,
            },
        };
        let body = serde_json::to_string(&cloud)
            .map_err(|error| format!("cannot render a CloudEvent: {error}"))?;
        Ok(Self {
            id,
            seq: event.seq,
            body,
        })
    }

    /// Its headers for an attempt at `timestamp` (Unix seconds).
    pub fn sign(&self, key: &SigningKey, timestamp: i64) -> Signed {
        Signed {
            id: self.id.clone(),
            timestamp,
            signature: key.sign(&self.id, timestamp, &self.body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::event::{Actor, AuditEvent};
    use crate::domain::shared::time::Timestamp;
    use crate::domain::shared::username::Username;

    fn target() -> WebhookTarget {
        WebhookTarget {
            name: "portal".to_owned(),
            url: "https://hooks.example.com/latchkey".to_owned(),
            event_types: vec![],
            secret_file: PathBuf::from("/run/secrets/hook"),
            timeout: 10,
            max_backoff: 300,
        }
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The Standard Webhooks specification's own example.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(format!("{key:?}"), "SigningKey(redacted)");
    }

    #[test]
    fn bad_secrets_are_refused_without_being_shown() {
        let short = format!("whsec_{}", STANDARD.encode([7u8; 8]));
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            &short,
        ] {
            let why = SigningKey::parse(bad).unwrap_err();
            assert!(bad.is_empty() || !why.contains(bad), "{why}");
        }
        assert!(SigningKey::parse(&format!(" whsec_{}\n", STANDARD.encode([1u8; 32]))).is_ok());
    }

    #[test]
    fn targets_are_checked_field_by_field() {
        assert!(target().check(0).is_ok());
        type Change = fn(&mut WebhookTarget);
        let cases: [(Change, &str); 9] = [
            (|t| t.name = "Portal".to_owned(), "webhooks[3].name"),
            (|t| t.name = "a".repeat(65), "webhooks[3].name"),
            (|t| t.name = String::new(), "webhooks[3].name"),
            (
                |t| t.url = "ftp://example.com/".to_owned(),
                "webhooks[3].url",
            ),
            (
                |t| t.url = "https://user:pw@example.com/".to_owned(),
                "webhooks[3].url",
            ),
            (|t| t.url = "not a url".to_owned(), "webhooks[3].url"),
            (
                |t| t.event_types = vec!["authentication_failed".to_owned()],
                "webhooks[3].event_types",
            ),
            (|t| t.timeout = 0, "webhooks[3].timeout"),
            (|t| t.max_backoff = 0, "webhooks[3].max_backoff"),
        ];
        for (change, field) in cases {
            let mut bad = target();
            change(&mut bad);
            let why = bad.check(3).unwrap_err();
            assert!(why.starts_with(field), "{why}");
        }
    }

    #[test]
    fn every_feed_type_has_a_dotted_cloud_event_type() {
        assert_eq!(
            cloud_event_type(EventType::AppPasswordRevoked),
            "dev.latchkey.app_password.revoked"
        );
        assert_eq!(
            cloud_event_type(EventType::AppPasswordsBulkRevoked),
            "dev.latchkey.app_passwords.bulk_revoked"
        );
        assert_eq!(
            cloud_event_type(EventType::AccountAppPasswordsRevoked),
            "dev.latchkey.account.app_passwords_revoked"
        );
        for event_type in EventType::ALL.into_iter().filter(|t| t.in_feed()) {
            let name = cloud_event_type(event_type);
            assert!(!name.starts_with("dev.latchkey.event."), "{name}");
        }
    }

    #[test]
    fn a_delivery_is_a_cloud_event_with_a_stable_id() {
        let username = Username::parse("alice@example.com").unwrap();
        let event = FeedEvent {
            seq: 42,
            mark: 0xabc,
            event: AuditEvent::new(
                EventType::AppPasswordRevoked,
                Timestamp::from_millis(1_767_225_600_000),
                &Actor::system("portal"),
            )
            .app_password(&username, uuid::Uuid::nil()),
        };
        let feed = "00112233445566778899aabbccddeeff";
        let delivery = Delivery::of(feed, &event).unwrap();
        assert_eq!(delivery, Delivery::of(feed, &event).unwrap());
        assert_eq!(delivery.id, format!("{feed}-42-0000000000000abc"));
        let json: serde_json::Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "dev.latchkey.app_password.revoked");
        assert_eq!(json["subject"], "alice@example.com");
        assert_eq!(json["time"], "2026-01-01T00:00:00Z");
        assert_eq!(json["data"]["seq"], 42);
        let signed = delivery.sign(
            &SigningKey::parse(&format!("whsec_{}", STANDARD.encode([1u8; 32]))).unwrap(),
            5,
        );
        assert!(signed.signature.starts_with("v1,"));
    }
}
