//! Direct database work: the 1,000,000-row seed (SQLite), the bulk
//! revocation's seed (PostgreSQL), and row counts.

use sea_orm::{ConnectionTrait, Database};

use crate::BoxError;

const SCALE_ACCOUNTS: u64 = 100_000;
const SCALE_PER_ACCOUNT: u64 = 10;

/// How many app passwords the bulk revocation's filter takes.
pub const BULK_MATCHING: i64 = 100_000;
/// The protocol bits stored for POP3 and for IMAP (`1 << code`).
const POP3_BITS: i64 = 1 << 2;
const IMAP_BITS: i64 = 1 << 1;
/// What a filter on POP3 takes: its bit, or "any protocol"'s.
pub const POP3_OR_ANY_BITS: i64 = POP3_BITS | 1;
/// How far before the cutoff the seeded passwords were issued: evenly
/// over a year.
const BULK_SPREAD_MS: i64 = 365 * 24 * 3600 * 1000;
/// A hash of the default parameters that no secret matches.
const SEEDED_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWRzZWVkc2VlZA$c2VlZHNlZWRzZWVkc2VlZHNlZWRzZWVkc2VlZHNlZWQ";

/// Seeds 1,000,000 app passwords over 100,000 accounts with set-based
/// inserts (no argon2: these rows are never logged into, only searched
/// past). SQLite only.
pub async fn seed_million(database_url: &str) -> Result<(), BoxError> {
    let db = Database::connect(database_url).await?;
    let accounts = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SCALE_ACCOUNTS}) \
         INSERT INTO account (username, created_at, issue_count) \
         SELECT 'scale-' || i, 0, {SCALE_PER_ACCOUNT} FROM n"
    );
    let passwords = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SCALE_PER_ACCOUNT}) \
         INSERT INTO app_password (id, account_id, selector, secret_hash, display_name, protocols, \
           allowed_networks, issued_by, created_at, use_count, seen_networks) \
         SELECT randomblob(16), account.id, 'zzz' || n.i, \
           '{SEEDED_HASH}', 'Seeded', {POP3_BITS}, '', 'bench', 0, 0, '' \
         FROM account JOIN n WHERE account.username LIKE 'scale-%'"
    );
    db.execute_unprepared(&accounts).await?;
    db.execute_unprepared(&passwords).await?;
    db.close().await?;
    Ok(())
}

/// Seeds the bulk revocation's app passwords into a PostgreSQL database
/// with set-based inserts: [`BULK_MATCHING`] for POP3, `matching_per_account`
/// on each account, and one for IMAP only on each; all issued (by `bench`)
/// at random times in the year before `cutoff_ms`, with UUIDv7 ids of those
/// times, as issued ones have; then ANALYZE, as autovacuum would have by
/// then.
pub async fn seed_bulk(
    database_url: &str,
    cutoff_ms: i64,
    matching_per_account: i64,
) -> Result<(), BoxError> {
    let db = Database::connect(database_url).await?;
    let per_account = matching_per_account + 1;
    let accounts = format!(
        "INSERT INTO account (username, created_at, issue_count) \
         SELECT 'bulk-' || i, {cutoff_ms} - {BULK_SPREAD_MS} - 1, {per_account} \
         FROM generate_series(1, {}) AS i",
        BULK_MATCHING / matching_per_account
    );
    let passwords = format!(
        "INSERT INTO app_password (id, account_id, selector, secret_hash, display_name, protocols, \
           allowed_networks, issued_by, created_at, use_count, seen_networks) \
         SELECT (lpad(to_hex(created), 12, '0') || '7' || substr(md5(random()::text), 1, 3) \
             || '8' || substr(md5(random()::text), 1, 15))::uuid, \
           account_id, 'zzz' || n, '{SEEDED_HASH}', 'Seeded', \
           CASE WHEN n <= {matching_per_account} THEN {POP3_BITS} ELSE {IMAP_BITS} END, \
           '', 'bench', created, 0, '' \
         FROM (SELECT account.id AS account_id, n, \
                 {cutoff_ms} - 1 - floor(random() * {BULK_SPREAD_MS})::bigint AS created \
               FROM account CROSS JOIN generate_series(1, {per_account}) AS n \
               WHERE account.username LIKE 'bulk-%') AS seeded"
    );
    db.execute_unprepared(&accounts).await?;
    db.execute_unprepared(&passwords).await?;
    db.execute_unprepared("ANALYZE").await?;
    db.close().await?;
    Ok(())
}

pub async fn count_passwords(database_url: &str) -> Result<i64, BoxError> {
    let counts = counts(database_url, &["SELECT COUNT(*) FROM app_password"]).await?;
    Ok(counts[0])
}

/// The one number each query returns (a `bigint`), in order.
pub async fn counts(database_url: &str, queries: &[&str]) -> Result<Vec<i64>, BoxError> {
    let db = Database::connect(database_url).await?;
    let mut counts = Vec::with_capacity(queries.len());
    for query in queries {
        let row = db
            .query_one(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT ({query}) AS n"),
            ))
            .await?
            .ok_or("no count")?;
        counts.push(row.try_get("", "n")?);
    }
    db.close().await?;
    Ok(counts)
}
