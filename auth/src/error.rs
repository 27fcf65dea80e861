//! Errors of the auth crate. A policy that fails to parse or validate is
//! refused as a whole (the broker keeps the last good one); authentication
//! failures map to CONNACK reason codes in one place ([`AuthFailure::reason_code_v5`]).

use std::fmt;

use thiserror::Error;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The policy is usable, but probably not what its author meant.
    Warning,
    /// The policy is refused.
    Error,
}

/// One finding of parsing or validation, located in the policy text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// 1-based line (0 when the finding has no location).
    pub line: usize,
    /// 1-based column (0 when the finding has no location).
    pub col: usize,
    /// The rule (or identity/test) the finding is about, if any.
    pub subject: Option<String>,
    /// Stable short code, e.g. `shadowed`, `unknown-role`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}:{}: {sev}[{}]", self.line, self.col, self.code)?;
        if let Some(s) = &self.subject {
            write!(f, " ({s})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A validation warning (the policy still loads).
pub type Warning = Diagnostic;

/// Why a policy text was refused.
#[derive(Debug, Clone, Error)]
pub enum PolicyError {
    /// Not valid TOML, unknown key, wrong type, missing field.
    #[error("{line}:{col}: syntax error: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What the TOML/serde layer said.
        message: String,
    },
    /// Parsed, but semantically invalid (unknown role, duplicate id, bad
    /// pattern, bad password hash…). Holds every error found, at least one.
    #[error("{} error(s) in policy; first: {}", errors.len(), errors.first().map(ToString::to_string).unwrap_or_default())]
    Invalid {
        /// All errors, in file order.
        errors: Vec<Diagnostic>,
    },
}

impl PolicyError {
    /// Every error as a [`Diagnostic`] (one for a syntax error).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            PolicyError::Syntax { line, col, message } => vec![Diagnostic {
                severity: Severity::Error,
                line: *line,
                col: *col,
                subject: None,
                code: "syntax",
                message: message.clone(),
            }],
            PolicyError::Invalid { errors } => errors.clone(),
        }
    }

    /// Location of the first error.
    pub fn line_col(&self) -> (usize, usize) {
        match self {
            PolicyError::Syntax { line, col, .. } => (*line, *col),
            PolicyError::Invalid { errors } => errors.first().map_or((0, 0), |d| (d.line, d.col)),
        }
    }
}

/// Why [`crate::Policy::authenticate`] refused a client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthFailure {
    /// No identity has this username.
    #[error("unknown username")]
    UnknownUser,
    /// The identity has a password and none (or a wrong one) was given.
    /// An empty password is a password, not "no password".
    #[error("bad or missing password")]
    BadPassword,
    /// The identity authenticates by certificate only, and the client
    /// presented no matching certificate.
    #[error("identity requires a client certificate")]
    CertificateRequired,
    /// A client certificate was presented but maps to no identity, and no
    /// username was given.
    #[error("client certificate matches no identity")]
    UnknownCertificate,
    /// No credentials and the policy does not enable anonymous access.
    #[error("anonymous access disabled")]
    AnonymousDisabled,
    /// Stored hash unusable at verification time (should be caught at
    /// load); fail closed.
    #[error("credential backend error: {0}")]
    Backend(String),
}

impl AuthFailure {
    /// Suggested MQTT 5 CONNACK reason code.
    pub fn reason_code_v5(&self) -> u8 {
        match self {
            AuthFailure::UnknownUser | AuthFailure::BadPassword => 0x86,
            AuthFailure::CertificateRequired
            | AuthFailure::UnknownCertificate
            | AuthFailure::AnonymousDisabled => 0x87,
            AuthFailure::Backend(_) => 0x80,
        }
    }

    /// Suggested MQTT 3.1.1 CONNACK return code (4 = bad username or
    /// password, 5 = not authorized).
    pub fn return_code_v311(&self) -> u8 {
        match self {
            AuthFailure::UnknownUser | AuthFailure::BadPassword => 4,
            _ => 5,
        }
    }

    /// Low-cardinality label for metrics/events.
    pub fn label(&self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::BadPassword => "bad_password",
            AuthFailure::CertificateRequired => "cert_required",
            AuthFailure::UnknownCertificate => "unknown_cert",
            AuthFailure::AnonymousDisabled => "anonymous_disabled",
            AuthFailure::Backend(_) => "backend",
        }
    }
}

/// [`crate::hash_password`] failed (random source or parameter error).
#[derive(Debug, Clone, Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(pub String);
