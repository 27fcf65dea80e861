//! Configuration of the built-in plugins (`[[plugins]]` in the broker's
//! TOML file).

use std::sync::Arc;

use serde::Deserialize;

use crate::Plugin;
use crate::builtin::{JsonPayload, PayloadLimit};
use crate::filter::Filter;

/// One `[[plugins]]` table: `kind` picks the plugin, the other keys are its
/// settings. Unknown kinds and keys are errors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PluginConfig {
    /// Publishes to `topics` must carry a JSON payload (a JSON object
    /// holding every key of `required_keys`, when given).
    JsonPayload {
        /// Name in logs and metrics (default `json_payload`).
        #[serde(default)]
        name: Option<String>,
        /// Topic filters the check applies to.
        topics: Vec<String>,
        /// Top-level keys the JSON object must have.
        #[serde(default)]
        required_keys: Vec<String>,
    },
    /// Publishes to `topics` may carry at most `max_bytes` of payload
    /// (tighter than the broker-wide packet limit, per topic).
    PayloadLimit {
        /// Name in logs and metrics (default `payload_limit`).
        #[serde(default)]
        name: Option<String>,
        /// Topic filters the limit applies to.
        topics: Vec<String>,
        /// Largest payload accepted, in bytes.
        max_bytes: usize,
    },
}

/// A plugin configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugins[{index}] ({kind}): {problem}")]
pub struct ConfigError {
    /// Position in the `[[plugins]]` list, from 0.
    pub index: usize,
    /// The plugin's kind.
    pub kind: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl PluginConfig {
    pub(crate) fn build(&self, index: usize) -> Result<Arc<dyn Plugin>, ConfigError> {
        let kind = self.kind();
        let err = |problem: String| ConfigError {
            index,
            kind,
            problem,
        };
        let filters = |topics: &[String]| -> Result<Vec<Filter>, ConfigError> {
            if topics.is_empty() {
                return Err(err("`topics` must name at least one topic filter".into()));
            }
            topics
                .iter()
                .map(|t| Filter::parse(t).map_err(err))
                .collect()
        };
        let name = |n: &Option<String>| -> Result<String, ConfigError> {
            match n {
                None => Ok(kind.to_owned()),
                Some(n) if valid_name(n) => Ok(n.clone()),
                Some(n) => Err(err(format!(
                    "name {n:?}: use 1-64 characters of a-z, 0-9, '_' and '-'"
                ))),
            }
        };
        Ok(match self {
            PluginConfig::JsonPayload {
                name: n,
                topics,
                required_keys,
            } => Arc::new(JsonPayload::new(
                name(n)?,
                filters(topics)?,
                required_keys.clone(),
            )),
            PluginConfig::PayloadLimit {
                name: n,
                topics,
                max_bytes,
            } => Arc::new(PayloadLimit::new(name(n)?, filters(topics)?, *max_bytes)),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            PluginConfig::JsonPayload { .. } => "json_payload",
            PluginConfig::PayloadLimit { .. } => "payload_limit",
        }
    }
}

/// Plugin names become metric label values: keep them short and plain.
fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PluginChain;

    #[derive(Deserialize)]
    struct File {
        plugins: Vec<PluginConfig>,
    }

    fn load(s: &str) -> Result<PluginChain, String> {
        let f: File = toml::from_str(s).map_err(|e| e.to_string())?;
        PluginChain::build(&f.plugins).map_err(|e| e.to_string())
    }

    #[test]
    fn builds_the_built_ins() {
        let c = load(
            "[[plugins]]\nkind = \"json_payload\"\ntopics = [\"sensors/#\"]\nrequired_keys = [\"ts\"]\n\
             [[plugins]]\nkind = \"payload_limit\"\nname = \"small-cmds\"\ntopics = [\"cmd/+\"]\nmax_bytes = 16\n",
        )
        .unwrap();
        assert_eq!(format!("{c:?}"), "[\"json_payload\", \"small-cmds\"]");
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let unknown_kind = load("[[plugins]]\nkind = \"bridge\"\ntopics = [\"a\"]\n").unwrap_err();
        assert!(unknown_kind.contains("bridge"), "{unknown_kind}");
        let unknown_key =
            load("[[plugins]]\nkind = \"json_payload\"\ntopics = [\"a\"]\nschema = 1\n")
                .unwrap_err();
        assert!(unknown_key.contains("schema"), "{unknown_key}");
        let bad_filter =
            load("[[plugins]]\nkind = \"json_payload\"\ntopics = [\"a/#/b\"]\n").unwrap_err();
        assert!(
            bad_filter.starts_with("plugins[0] (json_payload)"),
            "{bad_filter}"
        );
        let no_topics = load("[[plugins]]\nkind = \"payload_limit\"\ntopics = []\nmax_bytes = 1\n")
            .unwrap_err();
        assert!(no_topics.contains("at least one"), "{no_topics}");
        let bad_name =
            load("[[plugins]]\nkind = \"payload_limit\"\nname = \"Big Name\"\ntopics = [\"a\"]\nmax_bytes = 1\n")
                .unwrap_err();
        assert!(bad_name.contains("name"), "{bad_name}");
    }
}
