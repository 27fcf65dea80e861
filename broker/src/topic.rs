//! Validated topic names, topic filters and SUBSCRIBE filters.
//!
//! Everything a client sends is parsed here once, at the edge; the rest of the
//! broker takes [`TopicName`] / [`TopicFilter`] / [`Subscription`] and never
//! re-validates. Every check is a single linear pass with no recursion, so a
//! hostile input such as 65,535 `/` characters (CVE-2019-11779) costs O(n) and
//! is rejected with [`TopicError::TooManyLevels`] instead of exhausting the stack.

use std::fmt;
use std::str::Split;
use std::sync::Arc;

use bytestring::ByteString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hard ceiling on any topic length: MQTT strings carry a 16-bit length prefix,
/// so nothing longer can ever arrive on the wire.
const MQTT_MAX_STRING_LEN: usize = 65_535;

/// Limits for re-validating values read back from the replicated log or a
/// snapshot: they were checked against the configured limits when a client
/// sent them, and a later, stricter configuration must not make stored state
/// unreadable. Only the structural invariants are re-checked.
const STORED_LIMITS: TopicLimits = TopicLimits {
    max_len: MQTT_MAX_STRING_LEN,
    max_levels: MQTT_MAX_STRING_LEN + 1,
};

/// Prefix that marks a shared subscription [MQTT-4.8.2-1].
const SHARE_PREFIX: &str = "$share/";

/// Limits applied when parsing names/filters from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Maximum length in bytes. Values above 65,535 are treated as 65,535,
    /// the largest string the protocol can encode.
    pub max_len: usize,
    /// Maximum number of `/`-separated levels. Bounds the depth of the
    /// subscription trie and therefore the work done per match.
    pub max_levels: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        Self {
            max_len: 4096,
            max_levels: 128,
        }
    }
}

impl TopicLimits {
    /// The effective byte limit: the configured one capped at the protocol maximum.
    fn effective_max_len(&self) -> usize {
        self.max_len.min(MQTT_MAX_STRING_LEN)
    }
}

/// Why a topic name, filter or shared subscription was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicError {
    /// Zero-length name or filter [MQTT-4.7.3-1].
    Empty,
    /// Longer than [`TopicLimits::max_len`].
    TooLong,
    /// More levels than [`TopicLimits::max_levels`].
    TooManyLevels,
    /// `+` or `#` inside a topic name [MQTT-4.7.0-1].
    WildcardInName,
    /// `#` not alone as the last level, or `+` not alone in its level
    /// [MQTT-4.7.1-1], [MQTT-4.7.1-2].
    MisplacedWildcard,
    /// U+0000 in a name or filter [MQTT-4.7.3-2].
    NulCharacter,
    /// Malformed `$share/{group}/{filter}` [MQTT-4.8.2-1], [MQTT-4.8.2-2].
    InvalidShare,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            Self::Empty => "topic is empty",
            Self::TooLong => "topic is too long",
            Self::TooManyLevels => "topic has too many levels",
            Self::WildcardInName => "topic name contains a wildcard",
            Self::MisplacedWildcard => "wildcard is not a whole level or '#' is not last",
            Self::NulCharacter => "topic contains U+0000",
            Self::InvalidShare => "malformed shared subscription",
        };
        f.write_str(msg)
    }
}

impl std::error::Error for TopicError {}

/// Checks shared by names and filters: non-empty, within the byte limit.
fn check_len(s: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if s.is_empty() {
        Err(TopicError::Empty)
    } else if s.len() > limits.effective_max_len() {
        Err(TopicError::TooLong)
    } else {
        Ok(())
    }
}

/// A topic name: non-empty, no `+`/`#`, no U+0000, within limits.
///
/// Cheap to clone: [`ByteString`] is `Bytes`-backed, so the name decoded from a
/// PUBLISH packet is shared with every queued copy instead of being copied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates a topic name received from a client (PUBLISH, will topic).
    pub fn parse(s: ByteString, limits: &TopicLimits) -> Result<TopicName, TopicError> {
        check_len(&s, limits)?;
        // One pass over the bytes: '/', '+', '#' and NUL are ASCII, so they can
        // never appear inside a multibyte UTF-8 sequence.
        let mut levels = 1usize;
        for b in s.as_bytes() {
            match b {
                b'/' => {
                    levels += 1;
                    if levels > limits.max_levels {
                        return Err(TopicError::TooManyLevels);
                    }
                }
                b'+' | b'#' => return Err(TopicError::WildcardInName),
                0 => return Err(TopicError::NulCharacter),
                _ => {}
            }
        }
        if levels > limits.max_levels {
            return Err(TopicError::TooManyLevels);
        }
        Ok(TopicName(s))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying shared string, e.g. to encode into an outgoing PUBLISH.
    pub fn inner(&self) -> &ByteString {
        &self.0
    }

    /// Unwraps into the shared string without copying.
    pub fn into_inner(self) -> ByteString {
        self.0
    }

    /// True for names starting with `$` (e.g. `$SYS/...`), which leading
    /// wildcards must not match [MQTT-4.7.2-1].
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The `/`-separated levels; empty levels (`a//b`) are yielded as `""`.
    pub fn levels(&self) -> Split<'_, char> {
        self.0.split('/')
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TopicName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TopicName {
    /// Deserialisation is an edge too: the invariants are re-validated.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = ByteString::deserialize(deserializer)?;
        TopicName::parse(s, &STORED_LIMITS).map_err(serde::de::Error::custom)
    }
}

/// A topic filter (no share prefix): non-empty, `#` only as the whole last
/// level, `+` only as a whole level, no U+0000, within limits.
///
/// Held as `Arc<str>` because one filter is referenced from the session, the
/// subscription index keying and retained-message scans; clones are refcounts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Arc<str>);

impl TopicFilter {
    /// Validates a topic filter received from a client (SUBSCRIBE/UNSUBSCRIBE
    /// after any `$share/{group}/` prefix has been removed).
    pub fn parse(s: &str, limits: &TopicLimits) -> Result<TopicFilter, TopicError> {
        check_len(s, limits)?;
        let mut levels = 0usize;
        let mut after_hash = false;
        for level in s.split('/') {
            levels += 1;
            if levels > limits.max_levels {
                return Err(TopicError::TooManyLevels);
            }
            // A '#' level followed by anything at all is misplaced [MQTT-4.7.1-1].
            if after_hash {
                return Err(TopicError::MisplacedWildcard);
            }
            for b in level.as_bytes() {
                match b {
                    b'#' | b'+' if level.len() != 1 => {
                        return Err(TopicError::MisplacedWildcard);
                    }
                    b'#' => after_hash = true,
                    0 => return Err(TopicError::NulCharacter),
                    _ => {}
                }
            }
        }
        Ok(TopicFilter(Arc::from(s)))
    }

    /// The filter as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if the filter contains `+` or `#`. Validation guarantees those
    /// bytes only ever appear as wildcards, so a byte scan is exact.
    pub fn has_wildcards(&self) -> bool {
        self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// The `/`-separated levels; `+` and `#` are yielded as whole levels.
    pub fn levels(&self) -> Split<'_, char> {
        self.0.split('/')
    }

    /// Whether this filter matches `topic`.
    ///
    /// Iterative, O(levels). A leading `+` or `#` never matches a topic that
    /// starts with `$` [MQTT-4.7.2-1]; `a/#` also matches `a` (the parent
    /// level) [MQTT-4.7.1-2]; `+` matches an empty level.
    pub fn matches(&self, topic: &TopicName) -> bool {
        if topic.is_system() && self.0.starts_with(['+', '#']) {
            return false;
        }
        let mut filter_levels = self.levels();
        let mut topic_levels = topic.levels();
        loop {
            match (filter_levels.next(), topic_levels.next()) {
                // '#' is always last (validated), and covers zero or more levels.
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(f), Some(t)) if f == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TopicFilter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TopicFilter {
    /// Deserialisation is an edge too: the invariants are re-validated.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TopicFilter::parse(&s, &STORED_LIMITS).map_err(serde::de::Error::custom)
    }
}

/// A parsed SUBSCRIBE/UNSUBSCRIBE filter: plain or shared.
///
/// Ordered (share group, then filter) so sessions can keep their
/// subscriptions in a `BTreeMap` with a deterministic iteration order on every
/// replica. Displays and serialises as the string the client sent
/// (`$share/{group}/{filter}` or the plain filter).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subscription {
    /// `Some(group)` for `$share/{group}/{filter}`, `None` for a plain filter.
    pub share_group: Option<Arc<str>>,
    /// The filter to match topics against (without the share prefix).
    pub filter: TopicFilter,
}

impl Subscription {
    /// Parses `$share/{group}/{filter}` or a plain filter.
    ///
    /// The group must be non-empty and free of `+`, `#` and `/`
    /// [MQTT-4.8.2-1], [MQTT-4.8.2-2], and a non-empty filter must follow the
    /// second `/`; otherwise [`TopicError::InvalidShare`]. Errors inside the
    /// filter part itself (e.g. a misplaced `#`) are reported as such. Anything
    /// not starting with `$share/` is a plain filter (so `$share` alone is a
    /// plain filter that matches the topic `$share`).
    pub fn parse(s: &str, limits: &TopicLimits) -> Result<Subscription, TopicError> {
        // The byte limit applies to the string as the client sent it.
        check_len(s, limits)?;
        let Some(rest) = s.strip_prefix(SHARE_PREFIX) else {
            return Ok(Subscription {
                share_group: None,
                filter: TopicFilter::parse(s, limits)?,
            });
        };
        let Some((group, filter)) = rest.split_once('/') else {
            return Err(TopicError::InvalidShare);
        };
        if group.is_empty() || filter.is_empty() || group.contains(['+', '#']) {
            return Err(TopicError::InvalidShare);
        }
        if group.contains('\0') {
            return Err(TopicError::NulCharacter);
        }
        Ok(Subscription {
            share_group: Some(Arc::from(group)),
            filter: TopicFilter::parse(filter, limits)?,
        })
    }

    /// True for `$share/...` subscriptions.
    pub fn is_shared(&self) -> bool {
        self.share_group.is_some()
    }

    /// The filter as a client writes it (`$share/{group}/{filter}` for
    /// shared subscriptions): what the policy authorizes.
    pub fn to_filter_string(&self) -> std::borrow::Cow<'_, str> {
        match &self.share_group {
            None => std::borrow::Cow::Borrowed(self.filter.as_str()),
            Some(g) => std::borrow::Cow::Owned(format!("$share/{g}/{}", self.filter.as_str())),
        }
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.share_group {
            Some(group) => write!(f, "{SHARE_PREFIX}{group}/{}", self.filter),
            None => f.write_str(self.filter.as_str()),
        }
    }
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subscription {
    /// Parsed like a SUBSCRIBE filter, so the share group is re-validated too.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Subscription::parse(&s, &STORED_LIMITS).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lim() -> TopicLimits {
        TopicLimits::default()
    }

    fn name(s: &str) -> TopicName {
        TopicName::parse(ByteString::from(s.to_owned()), &lim()).unwrap()
    }

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::parse(s, &lim()).unwrap()
    }

    fn name_err(s: &str) -> TopicError {
        TopicName::parse(ByteString::from(s.to_owned()), &lim()).unwrap_err()
    }

    fn filter_err(s: &str) -> TopicError {
        TopicFilter::parse(s, &lim()).unwrap_err()
    }

    fn m(f: &str, t: &str) -> bool {
        filter(f).matches(&name(t))
    }

    #[test]
    fn names_valid() {
        for s in [
            "a",
            "/",
            "a//b",
            "/finance",
            "$SYS/x",
            "é/a",
            "sport/tennis/player1",
            " ",
        ] {
            assert_eq!(name(s).as_str(), s);
        }
        assert!(name("$SYS/broker").is_system());
        assert!(!name("SYS/$").is_system());
        assert_eq!(name("a//b").levels().collect::<Vec<_>>(), ["a", "", "b"]);
        let n = name("x/y");
        assert_eq!(n.inner(), "x/y");
        assert_eq!(n.clone().into_inner(), "x/y");
        assert_eq!(n.to_string(), "x/y");
    }

    #[test]
    fn names_invalid() {
        assert_eq!(name_err(""), TopicError::Empty); // [MQTT-4.7.3-1]
        // [MQTT-4.7.0-1]: wildcards are for filters only.
        assert_eq!(name_err("a/+"), TopicError::WildcardInName);
        assert_eq!(name_err("#"), TopicError::WildcardInName);
        assert_eq!(name_err("a/b#"), TopicError::WildcardInName);
        assert_eq!(name_err("a\0b"), TopicError::NulCharacter); // [MQTT-4.7.3-2]
        assert_eq!(name_err(&"x".repeat(4097)), TopicError::TooLong);
        assert_eq!(name_err(&"/".repeat(128)), TopicError::TooManyLevels);
        assert!(TopicName::parse("/".repeat(127).into(), &lim()).is_ok());
    }

    #[test]
    fn max_len_is_capped_at_protocol_limit() {
        let big = TopicLimits {
            max_len: usize::MAX,
            max_levels: usize::MAX,
        };
        assert!(TopicFilter::parse(&"a".repeat(65_535), &big).is_ok());
        assert_eq!(
            TopicFilter::parse(&"a".repeat(65_536), &big).unwrap_err(),
            TopicError::TooLong
        );
    }

    #[test]
    fn cve_2019_11779_many_slashes() {
        // 65,535 '/' with generous limits must be linear and not recurse.
        let slashes = "/".repeat(65_535);
        let no_level_cap = TopicLimits {
            max_len: 65_535,
            max_levels: usize::MAX,
        };
        let f = TopicFilter::parse(&slashes, &no_level_cap).unwrap();
        let t = TopicName::parse(slashes.clone().into(), &no_level_cap).unwrap();
        assert!(f.matches(&t));
        let plus = format!("{}+", "/".repeat(65_534));
        let plus = TopicFilter::parse(&plus, &no_level_cap).unwrap();
        assert!(!plus.matches(&t)); // one level short
        let t2 =
            TopicName::parse(format!("{}x", "/".repeat(65_534)).into(), &no_level_cap).unwrap();
        assert!(plus.matches(&t2));
        assert!(!f.matches(&t2));
        // With default limits it is simply rejected.
        let limits = TopicLimits {
            max_len: 65_535,
            ..lim()
        };
        assert_eq!(
            TopicFilter::parse(&slashes, &limits).unwrap_err(),
            TopicError::TooManyLevels
        );
        assert_eq!(
            TopicName::parse(slashes.into(), &limits).unwrap_err(),
            TopicError::TooManyLevels
        );
    }

    #[test]
    fn filters_valid() {
        for s in [
            "#",
            "+",
            "+/+",
            "/+",
            "a/#",
            "sport/tennis/#",
            "+/tennis/#",
            "sport/+/player1",
            "a//b",
            "$SYS/#",
            "é/#",
        ] {
            assert_eq!(filter(s).as_str(), s);
        }
        assert!(filter("a/+/b").has_wildcards());
        assert!(filter("#").has_wildcards());
        assert!(!filter("a/b").has_wildcards());
    }

    #[test]
    fn filters_invalid() {
        assert_eq!(filter_err(""), TopicError::Empty);
        // [MQTT-4.7.1-1]: '#' must be the last level and alone in it.
        assert_eq!(filter_err("a/#/b"), TopicError::MisplacedWildcard);
        assert_eq!(filter_err("#/#"), TopicError::MisplacedWildcard);
        assert_eq!(filter_err("sport/tennis#"), TopicError::MisplacedWildcard);
        assert_eq!(filter_err("a#"), TopicError::MisplacedWildcard);
        assert_eq!(filter_err("#/"), TopicError::MisplacedWildcard);
        // [MQTT-4.7.1-2]: '+' must occupy an entire level.
        assert_eq!(filter_err("a+"), TopicError::MisplacedWildcard);
        assert_eq!(filter_err("+x/y"), TopicError::MisplacedWildcard);
        assert_eq!(filter_err("sport+"), TopicError::MisplacedWildcard);
        assert_eq!(filter_err("a/++"), TopicError::MisplacedWildcard);
        assert_eq!(filter_err("a/\0"), TopicError::NulCharacter);
        assert_eq!(filter_err(&"+/".repeat(128)), TopicError::TooManyLevels);
        assert_eq!(filter_err(&"x".repeat(4097)), TopicError::TooLong);
    }

    #[test]
    fn matching_spec_examples() {
        // [MQTT-4.7.1-2] examples from the specification.
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(m("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(m(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(m("sport/#", "sport"));
        assert!(m("sport/tennis/#", "sport/tennis"));
        assert!(m("sport/tennis/+", "sport/tennis/player1"));
        assert!(!m("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!m("sport/+", "sport"));
        assert!(m("sport/+", "sport/"));
        assert!(m("+/+", "/finance"));
        assert!(m("/+", "/finance"));
        assert!(!m("+", "/finance"));
        assert!(m("+", "finance"));
        assert!(m("#", "/finance"));
        assert!(m("a/+/b", "a//b"));
        assert!(!m("a/+/b", "a/b"));
        assert!(m("a/b", "a/b"));
        assert!(!m("a/b", "a/b/"));
        assert!(!m("a/b/", "a/b"));
        assert!(!m("a/b", "a"));
        assert!(!m("A", "a"));
    }

    #[test]
    fn dollar_topics() {
        // [MQTT-4.7.2-1]: leading wildcards do not match '$' topics.
        assert!(!m("#", "$SYS/x"));
        assert!(!m("+/x", "$SYS/x"));
        assert!(!m("+", "$SYS"));
        assert!(!m("+/#", "$SYS/x"));
        assert!(m("$SYS/#", "$SYS/x"));
        assert!(m("$SYS/#", "$SYS"));
        assert!(m("$SYS/+", "$SYS/x"));
        assert!(m("$SYS/x", "$SYS/x"));
        // '$' not at the start of the topic is ordinary.
        assert!(m("+/$x", "a/$x"));
        assert!(m("a/#", "a/$x"));
    }

    #[test]
    fn multibyte_levels() {
        // mqttbytes panicked slicing "é/a" against "#" at a non-char boundary.
        assert!(m("#", "é/a"));
        assert!(m("é/#", "é/a"));
        assert!(m("+/a", "é/a"));
        assert!(!m("e/a", "é/a"));
        assert!(m("日本/+/🚀", "日本/東京/🚀"));
    }

    #[test]
    fn subscriptions() {
        let s = Subscription::parse("a/+", &lim()).unwrap();
        assert_eq!(s.share_group, None);
        assert_eq!(s.filter.as_str(), "a/+");
        assert!(!s.is_shared());

        let s = Subscription::parse("$share/g1/a/#", &lim()).unwrap();
        assert_eq!(s.share_group.as_deref(), Some("g1"));
        assert_eq!(s.filter.as_str(), "a/#");
        assert!(s.is_shared());
        let s = Subscription::parse("$share/g/$SYS/+", &lim()).unwrap();
        assert_eq!(s.filter.as_str(), "$SYS/+");
        let s = Subscription::parse("$share/g//", &lim()).unwrap();
        assert_eq!(s.filter.as_str(), "/");

        for bad in [
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//x",
            "$share/+/x",
            "$share/#/x",
            "$share/g+/x",
            "$share/#",
        ] {
            assert_eq!(
                Subscription::parse(bad, &lim()).unwrap_err(),
                TopicError::InvalidShare,
                "{bad}"
            );
        }
        assert_eq!(
            Subscription::parse("$share/g/a/#/b", &lim()).unwrap_err(),
            TopicError::MisplacedWildcard
        );
        assert_eq!(
            Subscription::parse("$share/g\0/a", &lim()).unwrap_err(),
            TopicError::NulCharacter
        );
        assert_eq!(
            Subscription::parse("", &lim()).unwrap_err(),
            TopicError::Empty
        );
        // Not a share prefix: plain filters.
        for plain in ["$share", "$shared/g/x", "$SHARE/g/x"] {
            let s = Subscription::parse(plain, &lim()).unwrap();
            assert_eq!(s.share_group, None);
            assert_eq!(s.filter.as_str(), plain);
        }
    }

    #[test]
    fn error_display() {
        assert_eq!(
            TopicError::TooManyLevels.to_string(),
            "topic has too many levels"
        );
        let e: Box<dyn std::error::Error> = Box::new(TopicError::InvalidShare);
        assert!(!e.to_string().is_empty());
    }

    #[test]
    fn serde_round_trip_and_validation() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Stored {
            name: TopicName,
            filter: TopicFilter,
            subs: Vec<Subscription>,
        }
        let stored = Stored {
            name: name("$SYS/é"),
            filter: filter("a/+/#"),
            subs: vec![
                Subscription::parse("$share/g/a/+", &lim()).unwrap(),
                Subscription::parse("x/#", &lim()).unwrap(),
            ],
        };
        let text = toml::to_string(&stored).unwrap();
        assert!(text.contains("\"$share/g/a/+\""), "{text}");
        assert_eq!(toml::from_str::<Stored>(&text).unwrap(), stored);
        // Stored state is re-validated: invalid strings are rejected.
        for bad in [
            "name = \"a/#\"\nfilter = \"a\"\nsubs = []",
            "name = \"a\"\nfilter = \"a/#/b\"\nsubs = []",
            "name = \"a\"\nfilter = \"a\"\nsubs = [\"$share/+/x\"]",
            "name = \"\"\nfilter = \"a\"\nsubs = []",
        ] {
            assert!(toml::from_str::<Stored>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Subscription::parse("$share/g/a", &lim())
                .unwrap()
                .to_string(),
            "$share/g/a"
        );
    }

    #[test]
    fn subscription_order_is_group_then_filter() {
        let mut v: Vec<Subscription> = ["$share/b/a", "z", "$share/a/z", "a"]
            .iter()
            .map(|s| Subscription::parse(s, &lim()).unwrap())
            .collect();
        v.sort();
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["a", "z", "$share/a/z", "$share/b/a"]);
    }

    /// Straightforward recursive reading of the spec, used as an oracle for the
    /// iterative matcher.
    fn spec_match(f: &[&str], t: &[&str]) -> bool {
        match (f.first(), t.first()) {
            (Some(&"#"), _) => true,
            (Some(&"+"), Some(_)) => spec_match(&f[1..], &t[1..]),
            (Some(a), Some(b)) => a == b && spec_match(&f[1..], &t[1..]),
            (None, None) => true,
            _ => false,
        }
    }

    fn level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$s", "é"])
    }

    proptest! {
        #[test]
        fn matches_agrees_with_spec(
            f_levels in prop::collection::vec(prop::sample::select(vec!["a", "b", "", "$s", "é", "+"]), 0..5),
            hash in any::<bool>(),
            t_levels in prop::collection::vec(level(), 1..6),
        ) {
            let mut f_levels = f_levels;
            if hash || f_levels.is_empty() {
                f_levels.push("#");
            }
            let f_str = f_levels.join("/");
            let t_str = t_levels.join("/");
            prop_assume!(!t_str.is_empty() && !f_str.is_empty());
            let f = filter(&f_str);
            let t = name(&t_str);
            let leading_wild = matches!(f_levels[0], "+" | "#");
            let expected = !(t_str.starts_with('$') && leading_wild) && spec_match(&f_levels, &t_levels);
            prop_assert_eq!(f.matches(&t), expected, "{} vs {}", f_str, t_str);
        }

        #[test]
        fn parse_never_panics(s in "[a-c/+#$\\x00é]{0,12}") {
            let _ = TopicFilter::parse(&s, &lim());
            let _ = Subscription::parse(&s, &lim());
            if let Ok(n) = TopicName::parse(s.clone().into(), &lim()) {
                prop_assert_eq!(n.as_str(), s.as_str());
            }
        }
    }
}
