//! Identities and authentication: username + argon2id password, client
//! certificate attributes (CN, SAN DNS/URI, SHA-256 fingerprint, passed in
//! by the broker, never parsed here), or anonymous when enabled.
//!
//! Password verification is CPU-heavy (argon2id, ~20 MiB): the broker runs
//! [`crate::Policy::authenticate`] on a blocking thread. Decisions
//! ([`crate::Policy::decide`]) never touch passwords.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};

use crate::error::{AuthFailure, HashError};

/// Attributes of a verified client certificate, extracted by the broker's
/// TLS layer. The chain has already been verified against the CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common name.
    pub cn: Option<String>,
    /// subjectAltName DNS entries.
    pub san_dns: Vec<String>,
    /// subjectAltName URI entries (e.g. SPIFFE ids).
    pub san_uri: Vec<String>,
    /// SHA-256 of the DER certificate, hex (case and `:` separators ignored).
    pub sha256: String,
}

/// What a client presented at CONNECT.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// CONNECT username, if the flag was set (an empty username is `Some("")`).
    pub username: Option<&'a str>,
    /// CONNECT password, if the flag was set (an empty password is
    /// `Some(b"")`, which is a password, not "no password").
    pub password: Option<&'a [u8]>,
    /// Verified client certificate, on mTLS listeners.
    pub cert: Option<&'a CertInfo>,
}

/// An authenticated client. Class and roles are a snapshot for telemetry;
/// decisions resolve them again from the policy in force, by `name`, so a
/// reload that changes roles takes effect for connected clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Identity name (`anonymous` for the anonymous principal).
    pub name: Arc<str>,
    /// Class (sensor, gateway, operator…), a low-cardinality label.
    pub class: Arc<str>,
    /// Roles held.
    pub roles: Arc<[Arc<str>]>,
    /// Certificate CN, when authenticated by certificate (`${cert_cn}`).
    pub cert_cn: Option<Arc<str>>,
    /// Verified username, when authenticated by password (`${username}`).
    pub username: Option<Arc<str>>,
    /// Whether this is the anonymous principal.
    pub anonymous: bool,
    /// (policy instance id, identity index) to skip a name lookup.
    pub(crate) hint: (u64, u32),
}

/// Index of the anonymous principal in the identity tables.
pub(crate) const ANON: u32 = u32::MAX;

/// A compiled identity.
#[derive(Debug)]
pub(crate) struct IdentityDef {
    pub name: Arc<str>,
    pub class: u32,
    pub roles: Box<[u32]>,
    pub username: Option<Arc<str>>,
    pub password: Option<Box<str>>,
    pub has_cert: bool,
}

/// The anonymous principal's class and roles, when enabled.
#[derive(Debug)]
pub(crate) struct AnonDef {
    pub class: u32,
    pub roles: Box<[u32]>,
}

/// All identities, with lookup tables.
#[derive(Debug, Default)]
pub(crate) struct Identities {
    pub defs: Vec<IdentityDef>,
    pub by_name: HashMap<Box<str>, u32>,
    pub by_username: HashMap<Box<str>, u32>,
    pub by_sha256: HashMap<Box<str>, u32>,
    pub by_san_uri: HashMap<Box<str>, u32>,
    pub by_san_dns: HashMap<Box<str>, u32>,
    pub by_cn: HashMap<Box<str>, u32>,
    /// Longest prefix first.
    pub cn_prefixes: Vec<(Box<str>, u32)>,
    pub anonymous: Option<AnonDef>,
    pub class_names: Vec<Arc<str>>,
    pub role_names: Vec<Arc<str>>,
}

/// Normalizes a fingerprint: lower-case hex, separators removed.
pub(crate) fn normalize_sha256(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Checks a stored hash at load time: argon2id PHC string, nothing else
/// (a blank or malformed entry is an error, never "no password").
pub(crate) fn check_phc(hash: &str) -> Result<(), String> {
    if hash.trim().is_empty() {
        return Err("blank password hash (use `starling passwd` to create one)".into());
    }
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC hash string: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "hash algorithm `{}` is not argon2id",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("PHC string lacks salt or hash".into());
    }
    Ok(())
}

/// Hashes a password with argon2id (default parameters, random salt) into
/// a PHC string for the policy file: the `starling passwd` helper.
pub fn hash_password(pw: &[u8]) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(pw)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Constant-time (inside argon2) verification of `pw` against a PHC string.
fn verify(pw: &[u8], phc: &str) -> Result<bool, AuthFailure> {
    let parsed = PasswordHash::new(phc).map_err(|e| AuthFailure::Backend(e.to_string()))?;
    match Argon2::default().verify_password(pw, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(AuthFailure::Backend(e.to_string())),
    }
}

/// Burns the same CPU as a real verification so unknown usernames cannot be
/// told from wrong passwords by timing.
fn verify_dummy(pw: &[u8]) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(h) = DUMMY.get_or_init(|| hash_password(b"starling-dummy").ok()) {
        let _ = verify(pw, h);
    }
}

impl Identities {
    fn match_cert(&self, cert: &CertInfo) -> Option<u32> {
        let fpr = normalize_sha256(&cert.sha256);
        if let Some(i) = self.by_sha256.get(fpr.as_str()) {
            return Some(*i);
        }
        for uri in &cert.san_uri {
            if let Some(i) = self.by_san_uri.get(uri.as_str()) {
                return Some(*i);
            }
        }
        for dns in &cert.san_dns {
            if let Some(i) = self.by_san_dns.get(dns.to_ascii_lowercase().as_str()) {
                return Some(*i);
            }
        }
        let cn = cert.cn.as_deref()?;
        if let Some(i) = self.by_cn.get(cn) {
            return Some(*i);
        }
        self.cn_prefixes
            .iter()
            .find(|(p, _)| cn.starts_with(&**p) && cn.len() > p.len())
            .map(|(_, i)| *i)
    }

    /// Builds the principal for identity `idx` (or [`ANON`]).
    pub(crate) fn principal(
        &self,
        policy_id: u64,
        idx: u32,
        cert_cn: Option<&str>,
        username: Option<&str>,
    ) -> Option<Principal> {
        let (name, class, roles, anonymous): (Arc<str>, u32, &[u32], bool) = if idx == ANON {
            let a = self.anonymous.as_ref()?;
            ("anonymous".into(), a.class, &a.roles, true)
        } else {
            let d = self.defs.get(idx as usize)?;
            (d.name.clone(), d.class, &d.roles, false)
        };
        let names = |ids: &[u32]| -> Arc<[Arc<str>]> {
            ids.iter()
                .filter_map(|r| self.role_names.get(*r as usize).cloned())
                .collect()
        };
        Some(Principal {
            name,
            class: self
                .class_names
                .get(class as usize)
                .cloned()
                .unwrap_or_else(|| "".into()),
            roles: names(roles),
            cert_cn: cert_cn.map(Into::into),
            username: username.map(Into::into),
            anonymous,
            hint: (policy_id, idx),
        })
    }

    /// The authentication procedure documented in `docs/policy.md`:
    /// 1. a certificate matching an identity selects it (the client's
    ///    username is then ignored; if the identity also has a password,
    ///    the password is required too);
    /// 2. otherwise a username selects an identity, which must have a
    ///    password, and the password must verify;
    /// 3. otherwise an unmatched certificate is refused;
    /// 4. otherwise anonymous, if the policy enables it.
    pub(crate) fn authenticate(
        &self,
        policy_id: u64,
        creds: &Credentials<'_>,
    ) -> Result<Principal, AuthFailure> {
        let cn = creds.cert.and_then(|c| c.cn.as_deref());
        if let Some(idx) = creds.cert.and_then(|c| self.match_cert(c)) {
            let def = self
                .defs
                .get(idx as usize)
                .ok_or(AuthFailure::UnknownCertificate)?;
            let mut username = None;
            if let Some(phc) = &def.password {
                let pw = creds.password.ok_or(AuthFailure::BadPassword)?;
                if creds
                    .username
                    .is_some_and(|u| Some(u) != def.username.as_deref())
                {
                    verify_dummy(pw);
                    return Err(AuthFailure::BadPassword);
                }
                if !verify(pw, phc)? {
                    return Err(AuthFailure::BadPassword);
                }
                username = def.username.as_deref();
            }
            return self
                .principal(policy_id, idx, cn, username)
                .ok_or(AuthFailure::UnknownCertificate);
        }
        if let Some(user) = creds.username {
            let Some(&idx) = self.by_username.get(user) else {
                if let Some(pw) = creds.password {
                    verify_dummy(pw);
                }
                return Err(AuthFailure::UnknownUser);
            };
            let def = self
                .defs
                .get(idx as usize)
                .ok_or(AuthFailure::UnknownUser)?;
            if def.has_cert {
                // A cert-bound identity never authenticates by password alone.
                return Err(AuthFailure::CertificateRequired);
            }
            let phc = def
                .password
                .as_deref()
                .ok_or(AuthFailure::CertificateRequired)?;
            let pw = creds.password.ok_or(AuthFailure::BadPassword)?;
            if !verify(pw, phc)? {
                return Err(AuthFailure::BadPassword);
            }
            return self
                .principal(policy_id, idx, None, Some(user))
                .ok_or(AuthFailure::UnknownUser);
        }
        if creds.cert.is_some() {
            return Err(AuthFailure::UnknownCertificate);
        }
        self.principal(policy_id, ANON, None, None)
            .ok_or(AuthFailure::AnonymousDisabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trip_and_phc_check() {
        let h = hash_password(b"").unwrap();
        assert!(h.starts_with("$argon2id$"));
        check_phc(&h).unwrap();
        assert!(verify(b"", &h).unwrap());
        assert!(!verify(b"x", &h).unwrap());
        assert!(check_phc("").is_err());
        assert!(check_phc("   ").is_err());
        assert!(check_phc("plaintext").is_err());
        assert!(check_phc("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").is_err());
    }

    #[test]
    fn fingerprint_normalization() {
        assert_eq!(normalize_sha256("AB:cd:EF"), "abcdef");
    }
}
