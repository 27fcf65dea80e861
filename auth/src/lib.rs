//! Starling's authorization and authentication policy engine.
//!
//! A pure policy engine: **identity + action + topic → decision, with the
//! rule that decided**. The broker reads the policy file, hands the text to
//! [`Policy::parse`], authenticates clients with [`Policy::authenticate`]
//! (on a blocking thread: argon2id) and asks [`Policy::decide`] at CONNECT,
//! PUBLISH, SUBSCRIBE and delivery.
//!
//! ```text
//!  policy.toml ─(broker reads)─► Policy::parse ──► Policy (immutable, Arc-shared)
//!                                  │ errors line:col, warnings, [[test]]s
//!  CONNECT creds ─► authenticate ──► Principal
//!  Request{principal, client_id, action, topic, qos, retain, source, listener, tls}
//!        ─► decide ─► cache? ─► index (action × who × first level)
//!                  ─► conditions ─► topic relation ─► deny wins ─► Decision{allowed, rule}
//! ```
//!
//! Guarantees: deny wins over allow regardless of order; nothing matching
//! denies ("default deny"); an empty policy denies everything; a variable is
//! exactly one literal level (values with `/ + #`, NUL, control characters
//! or a leading `$` make rules using them not apply); wildcard-first
//! patterns never match `$` topics; `$share/g/f` is authorized as `f`; a
//! subscribe filter must be *covered* by an allow pattern and is denied if
//! it merely *overlaps* a deny pattern.
//!
//! Must not depend on any other workspace crate (no broker, no MQTT codec),
//! does no IO beyond what the caller passes in, and is not async. Format
//! reference: `docs/policy.md`; design record: `docs/adr/0006-policy.md`.

mod cache;
mod check;
mod compile;
mod decide;
mod error;
mod explain;
mod format;
mod identity;
mod index;
mod policy;
mod rule;
mod topic;

pub use check::{CheckReport, TestFailure};
pub use decide::{Decision, Request, RuleRef};
pub use error::{AuthFailure, Diagnostic, HashError, PolicyError, Severity, Warning};
pub use explain::{Explanation, RuleTrace, VarValue};
pub use identity::{CertInfo, Credentials, Principal, hash_password};
pub use policy::{DEFAULT_CACHE_ENTRIES, Policy};
pub use rule::{Action, Effect, Miss, VarSet};
pub use topic::{MAX_LEVELS, Pattern, Var, valid_level_value};
