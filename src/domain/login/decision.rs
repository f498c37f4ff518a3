//! The login decision, as pure functions of what was read, the time and
//! the configuration: no storage, no hashing, no clock. The service reads,
//! verifies and applies the effects; every rule about which login passes,
//! which is refused and why, and what each one changes, is here.
//!
//! A login is decided in two steps, because argon2 sits between them:
//! - [`gate`], before any verification: a stored block refuses the login
//!   (throttled, no argon2 at all); otherwise it may be verified, and the
//!   verified-secret cache may stand in for argon2 only when the candidate
//!   would be accepted, so every refusal and every failure pays a full
//!   verification and timing tells none of them apart.
//! - [`decide`], after it: the outcome, and the effects to apply.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use super::model::{Credential, FailureReason, LoginOutcome, LoginState};
use super::throttle::{Counter, ScopeKind, ThrottleConfig};
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::time::Timestamp;

/// A known source's success is written again after this long, so that it
/// stays known while it keeps signing in, without a write per login.
pub const SUCCESS_REFRESH: Duration = Duration::from_secs(86_400);

/// What a login is decided on, besides the typed password.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub state: &'a LoginState,
    pub protocol: Protocol,
    /// In canonical form (an IPv4-mapped IPv6 address is its IPv4 address).
    pub client_ip: IpAddr,
    pub now: Timestamp,
}

/// Before verification: refuse now, or verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// A stored block covers this login. `remember` lists the blocks of the
    /// source and the pair, which this replica keeps in memory so the next
    /// attempt is refused without a read (the account's block is not kept:
    /// a known source is exempt from it, which only a read can tell).
    Throttled {
        until: Timestamp,
        remember: Vec<(ScopeKind, Timestamp)>,
        /// The widest scope whose block refuses it (the source before the
        /// account before the pair): what the attempt is audited under,
        /// coalesced with the others that block refuses.
        by: ScopeKind,
    },
    /// Verify the password. The verified-secret cache may answer instead of
    /// argon2 only if `may_use_cache`. `room`: how many guesses of each
    /// scope may be in flight at once (argon2 running or queued) before
    /// this one must wait for one of them to be decided.
    Verify {
        may_use_cache: bool,
        room: [(ScopeKind, u32); 3],
    },
}

/// How the typed password was checked against the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The verified-secret cache recognised it (no argon2).
    Cached,
    /// argon2 ran, against the candidate's hash or, without one, the dummy.
    Argon2 { matched: bool },
    /// This replica verified the very same guess against the very same
    /// stored hash within the throttle's window (no argon2).
    Remembered { matched: bool },
    /// The typed text is a version 2 secret whose check letters are wrong:
    /// no secret ever issued, decided from the text alone (no argon2).
    CheckFailed,
}

/// What to change once a login is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Count a failure in the source, pair and account scopes and audit it.
    /// `account_known`: the account exists (the event names it only then);
    /// `app_password_id`: the password that was right but refused.
    CountFailure {
        reason: FailureReason,
        account_known: bool,
        app_password_id: Option<Uuid>,
    },
    /// Clear the pair's stored counter and note the success (the source
    /// becomes known); only when something would change, so a steady
    /// stream of good logins costs no write here.
    ClearPair,
    /// Forget this replica's memory of the pair's block. Its remembered
    /// wrong guesses stay: a stale device beside the owner's good one must
    /// not be counted again after each of the owner's sign-ins.
    ForgetPair,
    /// Remember that this secret verified, for the verified-secret cache.
    RememberVerified { app_password_id: Uuid },
    /// Record the use on the app password (last use, count, first-use and
    /// new-network events).
    RecordUse,
    /// Re-hash the secret with the configured argon2 parameters.
    Rehash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: LoginOutcome,
    pub effects: Vec<Effect>,
}

/// Whether the pair's source has signed in to the account recently enough
/// to be exempt from the account-wide block.
pub fn known_source(pair: &Counter, now: Timestamp, config: &ThrottleConfig) -> bool {
    pair.last_success_at
        .is_some_and(|at| now.since(at) < config.known_source_for())
}

/// Why a candidate whose password is right is still refused, in a fixed
/// order: the account, then the password's own rules (`Rules::refusal`,
/// the one copy of them).
pub fn refusal(credential: &Credential, facts: &Facts<'_>) -> Option<FailureReason> {
    if credential.account_disabled {
        return Some(FailureReason::AccountDisabled);
    }
    credential
        .rules
        .refusal(facts.now, Some(facts.protocol), Some(facts.client_ip))
        .map(FailureReason::from)
}

/// The step before verification. The source's, the pair's and the
/// account's stored blocks each refuse the login, except that the
/// account's does not apply to a known source of the account: spraying one
/// account from many addresses cannot lock out its owner's devices.
pub fn gate(facts: &Facts<'_>, config: &ThrottleConfig) -> Gate {
    let counters = &facts.state.counters;
    let exempt = known_source(&counters.pair, facts.now, config);
    let mut latest = None;
    let mut by = None;
    let mut remember = Vec::new();
    for kind in [ScopeKind::Source, ScopeKind::Account, ScopeKind::Pair] {
        if kind == ScopeKind::Account && exempt {
            continue;
        }
        if let Some(until) = counters.get(kind).blocked_until.filter(|u| *u > facts.now) {
            if kind != ScopeKind::Account {
                remember.push((kind, until));
            }
            latest = latest.max(Some(until));
            by = by.or(Some(kind));
        }
    }
    if let (Some(until), Some(by)) = (latest, by) {
        return Gate::Throttled {
            until,
            remember,
            by,
        };
    }
    let may_use_cache = facts
        .state
        .credential
        .as_ref()
        .is_some_and(|credential| refusal(credential, facts).is_none());
    let room = [ScopeKind::Source, ScopeKind::Pair, ScopeKind::Account].map(|kind| {
        let room = if kind == ScopeKind::Account && exempt {
            u32::MAX
        } else {
            config.rule(kind).room(&counters.get(kind), facts.now)
        };
        (kind, room)
    });
    Gate::Verify {
        may_use_cache,
        room,
    }
}

/// The step after verification. A wrong password (or no candidate) is a
/// failure; so is a right password that a rule refuses: a revoked or
/// expired password in use is as suspicious as a wrong one, and every
/// failure then costs the same. `hash_outdated`: the candidate's stored
/// hash is weaker than the configured parameters.
pub fn decide(facts: &Facts<'_>, verification: Verification, hash_outdated: bool) -> Decision {
    let matched = matches!(
        verification,
        Verification::Cached
            | Verification::Argon2 { matched: true }
            | Verification::Remembered { matched: true }
    );
    let credential = match &facts.state.credential {
        Some(credential) if matched => credential,
        _ => {
            return failure(
                FailureReason::InvalidCredentials,
                facts.state.account_exists,
                None,
            )
        }
    };
    if let Some(reason) = refusal(credential, facts) {
        return failure(reason, true, Some(credential.app_password_id));
    }

    let pair = &facts.state.counters.pair;
    let stale = pair
        .last_success_at
        .is_none_or(|at| facts.now.since(at) >= SUCCESS_REFRESH);
    let mut effects = Vec::with_capacity(5);
    if pair.failures > 0 || pair.blocked_until.is_some() || stale {
        effects.push(Effect::ClearPair);
    }
    effects.push(Effect::ForgetPair);
    if let Verification::Argon2 { .. } = verification {
        effects.push(Effect::RememberVerified {
            app_password_id: credential.app_password_id,
        });
    }
    effects.push(Effect::RecordUse);
    if hash_outdated {
        effects.push(Effect::Rehash);
    }
    Decision {
        outcome: LoginOutcome::Success {
            username: credential.username.clone(),
            app_password_id: credential.app_password_id,
        },
        effects,
    }
}

fn failure(reason: FailureReason, account_known: bool, app_password_id: Option<Uuid>) -> Decision {
    Decision {
        outcome: LoginOutcome::Failure(reason),
        effects: vec![Effect::CountFailure {
            reason,
            account_known,
            app_password_id,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::app_passwords::model::Rules;
    use crate::domain::login::throttle::ScopeCounters;
    use crate::domain::shared::network::{AllowedNetworks, SeenNetworks};
    use crate::domain::shared::protocol::ProtocolSet;
    use crate::domain::shared::username::Username;

    const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);
    const ID: Uuid = Uuid::from_u128(7);

    fn later(seconds: u64) -> Timestamp {
        NOW.saturating_add(Duration::from_secs(seconds))
    }

    fn earlier(seconds: u64) -> Timestamp {
        NOW.saturating_sub(Duration::from_secs(seconds))
    }

    fn credential() -> Credential {
        Credential {
            app_password_id: ID,
            username: Username::parse("alice").unwrap(),
            secret_hash: "$argon2id$…".to_owned(),
            account_disabled: false,
            rules: Rules {
                revoked: false,
                expires_at: None,
                idle_timeout: None,
                last_active_at: earlier(86_400),
                idle_expired: false,
                suspended: false,
                protocols: ProtocolSet::of([Protocol::Imap]),
                allowed_networks: AllowedNetworks::new(vec!["192.0.2.0/24".parse().unwrap()]),
            },
            use_count: 3,
            seen_networks: SeenNetworks::default(),
            warm: None,
        }
    }

    /// A login whose candidate would be accepted, from a source that signed
    /// in an hour ago.
    fn state() -> LoginState {
        let mut counters = ScopeCounters::default();
        counters.pair.last_success_at = Some(earlier(3600));
        LoginState {
            counters,
            account_exists: true,
            credential: Some(credential()),
        }
    }

    fn facts(state: &LoginState) -> Facts<'_> {
        Facts {
            state,
            protocol: Protocol::Imap,
            client_ip: "192.0.2.10".parse().unwrap(),
            now: NOW,
        }
    }

    fn config() -> ThrottleConfig {
        ThrottleConfig::default()
    }

    fn cache_allowed(state: &LoginState) -> Option<bool> {
        match gate(&facts(state), &config()) {
            Gate::Verify { may_use_cache, .. } => Some(may_use_cache),
            Gate::Throttled { .. } => None,
        }
    }

    fn room(state: &LoginState) -> [(ScopeKind, u32); 3] {
        match gate(&facts(state), &config()) {
            Gate::Verify { room, .. } => room,
            Gate::Throttled { .. } => panic!("throttled"),
        }
    }

    const ARGON2_OK: Verification = Verification::Argon2 { matched: true };
    const ARGON2_WRONG: Verification = Verification::Argon2 { matched: false };

    fn refused_with(state: &LoginState, verification: Verification) -> Decision {
        decide(&facts(state), verification, false)
    }

    fn count(reason: FailureReason, account_known: bool, id: Option<Uuid>) -> Vec<Effect> {
        vec![Effect::CountFailure {
            reason,
            account_known,
            app_password_id: id,
        }]
    }

    #[test]
    fn a_right_password_succeeds_records_its_use_and_is_remembered() {
        let state = state();
        let decision = decide(&facts(&state), ARGON2_OK, false);
        assert_eq!(
            decision.outcome,
            LoginOutcome::Success {
                username: Username::parse("alice").unwrap(),
                app_password_id: ID
            }
        );
        assert_eq!(
            decision.effects,
            vec![
                Effect::ForgetPair,
                Effect::RememberVerified {
                    app_password_id: ID
                },
                Effect::RecordUse
            ],
            "a known pair with no failures is not written"
        );
    }

    #[test]
    fn a_cached_success_is_not_remembered_again_and_an_outdated_hash_is_redone() {
        let state = state();
        let decision = decide(&facts(&state), Verification::Cached, true);
        assert_eq!(
            decision.effects,
            vec![Effect::ForgetPair, Effect::RecordUse, Effect::Rehash]
        );
    }

    #[test]
    fn a_success_clears_the_pair_only_when_something_would_change() {
        let mut with_failures = state();
        with_failures.counters.pair.failures = 2;
        let mut blocked_before = state();
        blocked_before.counters.pair.blocked_until = Some(earlier(1));
        let mut stale = state();
        stale.counters.pair.last_success_at = Some(earlier(86_400));
        let mut never = state();
        never.counters.pair.last_success_at = None;
        for state in [with_failures, blocked_before, stale, never] {
            let effects = decide(&facts(&state), ARGON2_OK, false).effects;
            assert_eq!(effects[0], Effect::ClearPair, "{state:?}");
        }
    }

    #[test]
    fn a_wrong_password_or_no_candidate_is_invalid_credentials() {
        let state = state();
        assert_eq!(
            refused_with(&state, ARGON2_WRONG).effects,
            count(FailureReason::InvalidCredentials, true, None)
        );
        let unknown_user = LoginState {
            account_exists: false,
            credential: None,
            ..state.clone()
        };
        let decision = refused_with(&unknown_user, ARGON2_WRONG);
        assert_eq!(
            decision.outcome,
            LoginOutcome::Failure(FailureReason::InvalidCredentials)
        );
        assert_eq!(
            decision.effects,
            count(FailureReason::InvalidCredentials, false, None),
            "an unknown account is not named"
        );
        let no_such_password = LoginState {
            credential: None,
            ..state
        };
        assert_eq!(
            refused_with(&no_such_password, ARGON2_OK).effects,
            count(FailureReason::InvalidCredentials, true, None),
            "nothing to match, whatever the verifier said"
        );
    }

    /// Each rule alone, with the right password: its own reason, counted as
    /// a failure against the password that was right.
    #[test]
    fn each_refusal_reason() {
        type Breaks = fn(&mut Credential);
        let cases: [(Breaks, FailureReason); 8] = [
            (
                |c| c.account_disabled = true,
                FailureReason::AccountDisabled,
            ),
            (|c| c.rules.revoked = true, FailureReason::Revoked),
            (|c| c.rules.expires_at = Some(NOW), FailureReason::Expired),
            // Idle for exactly its timeout: refused at once, before any
            // housekeeping marked it.
            (
                |c| c.rules.idle_timeout = Some(Duration::from_secs(86_400)),
                FailureReason::IdleExpired,
            ),
            (|c| c.rules.idle_expired = true, FailureReason::IdleExpired),
            (|c| c.rules.suspended = true, FailureReason::Suspended),
            (
                |c| c.rules.protocols = ProtocolSet::of([Protocol::Pop3]),
                FailureReason::ProtocolNotAllowed,
            ),
            (
                |c| {
                    c.rules.allowed_networks =
                        AllowedNetworks::new(vec!["198.51.100.0/24".parse().unwrap()])
                },
                FailureReason::NetworkNotAllowed,
            ),
        ];
        for (break_it, reason) in cases {
            let mut state = state();
            if let Some(c) = state.credential.as_mut() {
                break_it(c);
            }
            let decision = refused_with(&state, ARGON2_OK);
            assert_eq!(decision.outcome, LoginOutcome::Failure(reason));
            assert_eq!(decision.effects, count(reason, true, Some(ID)));
            assert_eq!(
                cache_allowed(&state),
                Some(false),
                "{reason:?}: a refused login pays argon2"
            );
            let wrong = refused_with(&state, ARGON2_WRONG);
            assert_eq!(
                wrong.outcome,
                LoginOutcome::Failure(FailureReason::InvalidCredentials),
                "{reason:?} is told only to whoever knows the password"
            );
        }
    }

    #[test]
    fn refusals_are_checked_in_order() {
        let mut state = state();
        if let Some(c) = state.credential.as_mut() {
            c.account_disabled = true;
            c.rules.revoked = true;
            c.rules.expires_at = Some(earlier(1));
            c.rules.idle_timeout = Some(Duration::from_secs(3600));
            c.rules.suspended = true;
            c.rules.protocols = ProtocolSet::of([Protocol::Pop3]);
            c.rules.allowed_networks =
                AllowedNetworks::new(vec!["198.51.100.0/24".parse().unwrap()]);
        }
        let order = [
            FailureReason::AccountDisabled,
            FailureReason::Revoked,
            FailureReason::Expired,
            FailureReason::IdleExpired,
            FailureReason::Suspended,
            FailureReason::ProtocolNotAllowed,
            FailureReason::NetworkNotAllowed,
        ];
        for reason in order {
            assert_eq!(
                refused_with(&state, ARGON2_OK).outcome,
                LoginOutcome::Failure(reason)
            );
            if let Some(c) = state.credential.as_mut() {
                match reason {
                    FailureReason::AccountDisabled => c.account_disabled = false,
                    FailureReason::Revoked => c.rules.revoked = false,
                    FailureReason::Expired => c.rules.expires_at = Some(later(1)),
                    // Used an hour ago: a two-hour timeout has not run out.
                    FailureReason::IdleExpired => {
                        c.rules.last_active_at = earlier(3600);
                        c.rules.idle_timeout = Some(Duration::from_secs(7200));
                    }
                    FailureReason::Suspended => c.rules.suspended = false,
                    FailureReason::ProtocolNotAllowed => {
                        c.rules.protocols = ProtocolSet::of([Protocol::Imap])
                    }
                    _ => c.rules.allowed_networks = AllowedNetworks::default(),
                }
            }
        }
        assert!(matches!(
            refused_with(&state, ARGON2_OK).outcome,
            LoginOutcome::Success { .. }
        ));
    }

    #[test]
    fn a_remembered_guess_is_decided_on_the_state_read_now() {
        let mut state = state();
        let remembered_right = Verification::Remembered { matched: true };
        if let Some(c) = state.credential.as_mut() {
            c.account_disabled = true;
        }
        assert_eq!(
            refused_with(&state, remembered_right).outcome,
            LoginOutcome::Failure(FailureReason::AccountDisabled)
        );
        if let Some(c) = state.credential.as_mut() {
            c.account_disabled = false;
        }
        let decision = decide(&facts(&state), remembered_right, false);
        assert!(matches!(decision.outcome, LoginOutcome::Success { .. }));
        assert!(
            !decision
                .effects
                .iter()
                .any(|e| matches!(e, Effect::RememberVerified { .. })),
            "only argon2 fills the verified-secret cache"
        );
        assert_eq!(
            refused_with(&state, Verification::Remembered { matched: false }).effects,
            count(FailureReason::InvalidCredentials, true, None)
        );
    }

    #[test]
    fn a_cached_verification_never_overrides_a_refusal() {
        let mut state = state();
        if let Some(c) = state.credential.as_mut() {
            c.rules.revoked = true;
        }
        assert_eq!(
            refused_with(&state, Verification::Cached).outcome,
            LoginOutcome::Failure(FailureReason::Revoked)
        );
    }

    #[test]
    fn the_cache_may_answer_only_for_a_login_that_would_succeed() {
        assert_eq!(cache_allowed(&state()), Some(true));
        let no_candidate = LoginState {
            credential: None,
            ..state()
        };
        assert_eq!(cache_allowed(&no_candidate), Some(false));
    }

    #[test]
    fn a_stored_block_throttles_before_verification_and_the_latest_counts() {
        let mut state = state();
        state.counters.source.blocked_until = Some(later(30));
        state.counters.pair.blocked_until = Some(later(60));
        assert_eq!(
            gate(&facts(&state), &config()),
            Gate::Throttled {
                until: later(60),
                remember: vec![(ScopeKind::Source, later(30)), (ScopeKind::Pair, later(60))],
                by: ScopeKind::Source,
            }
        );
        state.counters.source.blocked_until = Some(NOW);
        state.counters.pair.blocked_until = Some(earlier(5));
        assert!(
            matches!(gate(&facts(&state), &config()), Gate::Verify { .. }),
            "a block that has run out no longer applies"
        );
    }

    #[test]
    fn a_known_source_is_exempt_from_the_account_block_only() {
        let mut state = state();
        state.counters.account.blocked_until = Some(later(600));
        assert!(
            matches!(gate(&facts(&state), &config()), Gate::Verify { .. }),
            "signed in an hour ago: known"
        );
        let known_for = config().known_source_for();
        state.counters.pair.last_success_at = Some(NOW.saturating_sub(known_for));
        assert_eq!(
            gate(&facts(&state), &config()),
            Gate::Throttled {
                until: later(600),
                remember: vec![],
                by: ScopeKind::Account,
            },
            "known no longer; the account's block is not remembered in memory"
        );
        state.counters.pair.last_success_at = Some(earlier(60));
        state.counters.pair.blocked_until = Some(later(30));
        assert_eq!(
            gate(&facts(&state), &config()),
            Gate::Throttled {
                until: later(30),
                remember: vec![(ScopeKind::Pair, later(30))],
                by: ScopeKind::Pair,
            },
            "a known source's own pair block still applies"
        );
    }

    #[test]
    fn room_for_guesses_in_flight_is_what_is_left_of_each_limit() {
        use ScopeKind::{Account, Pair, Source};
        let mut state = state();
        state.counters.pair.last_success_at = None;
        assert_eq!(room(&state), [(Source, 30), (Pair, 5), (Account, 100)]);
        state.counters.pair.failures = 3;
        state.counters.pair.last_failure_at = Some(earlier(60));
        state.counters.source.failures = 29;
        state.counters.source.last_failure_at = Some(earlier(60));
        assert_eq!(room(&state), [(Source, 1), (Pair, 2), (Account, 100)]);
        // A block that has run out lets one guess at a time through.
        state.counters.pair.failures = 9;
        state.counters.pair.blocked_until = Some(earlier(1));
        assert_eq!(room(&state)[1], (Pair, 1));
        // Failures older than the window no longer count.
        state.counters.pair.last_failure_at = Some(earlier(86_400));
        assert_eq!(room(&state)[1], (Pair, 5));
        // A known source does not wait on the account's guesses.
        state.counters.pair.last_success_at = Some(earlier(60));
        assert_eq!(room(&state)[2], (Account, u32::MAX));
    }
}
