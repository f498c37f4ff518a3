//! What the rules need from storage. The sea-orm implementation lives in
//! `crate::store`; this trait keeps SQL out of the domain.
//!
//! Every method is one transaction: when it returns `Ok`, what it wrote is
//! committed and durable.

use std::future::Future;
use std::net::IpAddr;

use uuid::Uuid;

use super::clock::Timestamp;
use super::error::Result;
use super::model::{Account, AppPassword, AppPasswordCursor, Page};
use super::network::AllowedNetworks;
use super::protocol::{Protocol, ProtocolSet};
use super::username::Username;

/// A new app password, hashed and ready to store.
#[derive(Debug)]
pub struct NewAppPassword {
    pub id: Uuid,
    pub username: Username,
    pub selector: String,
    /// The argon2id PHC string; never the secret.
    pub secret_hash: String,
    pub display_name: String,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
    pub issued_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug)]
pub enum IssueOutcome {
    Issued(Box<AppPassword>),
    AccountDisabled,
    CapReached,
    /// The account already has a password with this selector (about one
    /// issue in 450,000 per existing password); draw a new secret.
    SelectorTaken,
}

/// What Authenticate needs to decide a login, read in one indexed query.
#[derive(Debug)]
pub struct Credential {
    pub app_password_id: Uuid,
    pub username: Username,
    pub secret_hash: String,
    pub account_disabled: bool,
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
}

#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub at: Timestamp,
    pub client_ip: IpAddr,
    pub protocol: Protocol,
}

pub trait Store: Send + Sync + 'static {
    /// Creates the account if it does not exist, then, atomically with
    /// respect to every other issue for the same account, checks that it is
    /// enabled and below `cap` active passwords and inserts the password.
    fn issue(
        &self,
        new: NewAppPassword,
        cap: u32,
    ) -> impl Future<Output = Result<IssueOutcome>> + Send;

    /// The one candidate record for a login: the password of `username`
    /// whose selector is `selector`, if any.
    fn find_credential(
        &self,
        username: &Username,
        selector: &str,
    ) -> impl Future<Output = Result<Option<Credential>>> + Send;

    fn record_use(&self, id: Uuid, usage: Usage) -> impl Future<Output = Result<()>> + Send;

    fn get_app_password(
        &self,
        username: &Username,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<AppPassword>>> + Send;

    /// `None` when the account does not exist.
    fn list_app_passwords(
        &self,
        username: &Username,
        show_revoked: bool,
        after: Option<AppPasswordCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Option<Page<AppPassword>>>> + Send;

    /// Revokes unless already revoked; returns the password as it now is,
    /// `None` when there is no such password.
    fn revoke_app_password(
        &self,
        username: &Username,
        id: Uuid,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<AppPassword>>> + Send;

    /// Revokes every unrevoked, unexpired password of the account; returns
    /// how many.
    fn revoke_account_app_passwords(
        &self,
        username: &Username,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64>> + Send;

    fn get_account(
        &self,
        username: &Username,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Account>>> + Send;

    fn list_accounts(
        &self,
        after: Option<&Username>,
        limit: u32,
        now: Timestamp,
    ) -> impl Future<Output = Result<Page<Account>>> + Send;

    /// Disables (keeping the first disablement if already disabled) or, with
    /// `None`, enables. Returns the account as it now is.
    fn set_account_disabled(
        &self,
        username: &Username,
        disable: Option<(Timestamp, &str)>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Account>>> + Send;

    /// Deletes the account and its passwords; `false` if it did not exist.
    fn delete_account(&self, username: &Username) -> impl Future<Output = Result<bool>> + Send;
}
