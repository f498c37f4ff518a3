//! Direct database work: the 1,000,000-row seed and row counts.

use sea_orm::{ConnectionTrait, Database};

use crate::BoxError;

const SCALE_ACCOUNTS: u64 = 100_000;
const SCALE_PER_ACCOUNT: u64 = 10;

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
           '$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWRzZWVkc2VlZA$c2VlZHNlZWRzZWVkc2VlZHNlZWRzZWVkc2VlZHNlZWQ', \
           'Seeded', 4, '', 'bench', 0, 0, '' \
         FROM account JOIN n WHERE account.username LIKE 'scale-%'"
    );
    db.execute_unprepared(&accounts).await?;
    db.execute_unprepared(&passwords).await?;
    db.close().await?;
    Ok(())
}

pub async fn count_passwords(database_url: &str) -> Result<i64, BoxError> {
    let db = Database::connect(database_url).await?;
    let row = db
        .query_one(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM app_password",
        ))
        .await?
        .ok_or("no count")?;
    let count: i64 = row.try_get("", "n")?;
    db.close().await?;
    Ok(count)
}
