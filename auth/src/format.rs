//! The policy file as written (TOML, `version = 1`). Every table denies
//! unknown keys so a typo is an error, never a silently ignored setting.
//! See `docs/policy.md` for the reference.

use serde::Deserialize;
use toml::Spanned;

/// A string or a list of strings (`who = "*"` or `who = ["a", "b"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A revision is whatever operators bump: a string or a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Revision {
    Text(String),
    Number(i64),
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    pub version: Spanned<i64>,
    #[serde(default)]
    pub revision: Option<Revision>,
    /// For humans only; accepted so files can document themselves.
    #[serde(default)]
    #[allow(dead_code)]
    pub description: Option<String>,
    #[serde(default)]
    pub anonymous: Option<Spanned<Anonymous>>,
    #[serde(default)]
    pub zones: std::collections::BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    pub identity: Vec<Identity>,
    #[serde(default)]
    pub rule: Vec<Rule>,
    #[serde(default)]
    pub test: Vec<Test>,
}

/// `[anonymous]`: present and `enabled = true` turns anonymous clients on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Anonymous {
    pub enabled: bool,
    pub class: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[[identity]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Identity {
    pub name: Spanned<String>,
    pub class: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    #[serde(default)]
    pub cert_cn: Option<String>,
    #[serde(default)]
    pub cert_cn_prefix: Option<String>,
    #[serde(default)]
    pub cert_san_dns: Vec<String>,
    #[serde(default)]
    pub cert_san_uri: Vec<String>,
    #[serde(default)]
    pub cert_sha256: Vec<String>,
}

/// `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    pub id: Spanned<String>,
    pub effect: Spanned<String>,
    pub action: OneOrMany,
    pub who: OneOrMany,
    #[serde(default)]
    pub topic: Option<OneOrMany>,
    /// For humans only; accepted so files can document themselves.
    #[serde(default)]
    #[allow(dead_code)]
    pub description: Option<String>,
    #[serde(default)]
    pub listeners: Option<Vec<String>>,
    #[serde(default)]
    pub tls: Option<bool>,
    #[serde(default)]
    pub zones: Option<Vec<String>>,
    #[serde(default)]
    pub max_qos: Option<u8>,
    #[serde(default)]
    pub qos: Option<Vec<u8>>,
    #[serde(default)]
    pub retain: Option<bool>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_id_prefix: Option<String>,
    #[serde(default)]
    pub share_groups: Option<Vec<String>>,
}

/// `[[test]]`: a sample request and the expected outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Test {
    pub name: Spanned<String>,
    /// An identity name, or `anonymous`.
    pub principal: String,
    pub action: String,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub cert_cn: Option<String>,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    #[serde(default)]
    pub listener: Option<String>,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub source: Option<String>,
    pub expect: String,
    #[serde(default)]
    pub rule: Option<String>,
}
