//! Topic patterns (with `+`, `#` and `${var}` levels), topic names, filters
//! and the three relations the engine needs:
//!
//! * [`Pattern::matches_topic`] — a concrete topic name is matched by the
//!   pattern (publish, receive, retain, will);
//! * [`Pattern::covers_filter`] — every topic the requested filter can match
//!   is also matched by the pattern (subscribe, allow rules);
//! * [`Pattern::overlaps_filter`] — some topic is matched by both (subscribe,
//!   deny rules).
//!
//! A variable stands for exactly one literal level. Its value must pass
//! [`valid_level_value`]; if it does not, the pattern matches nothing.
//! Patterns starting with a wildcard never match a `$`-prefixed topic
//! [MQTT-4.7.2-1].

use crate::rule::VarSet;

/// Longest topic or filter, in levels, the engine evaluates (CVE-2019-11779).
pub const MAX_LEVELS: usize = 128;

/// A variable usable in patterns and client-id templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    /// `${client_id}`: the MQTT client identifier.
    ClientId,
    /// `${username}`: the username of a password-authenticated principal.
    Username,
    /// `${cert_cn}`: the subject CN of the client certificate.
    CertCn,
    /// `${class}`: the principal's class.
    Class,
}

impl Var {
    /// Parses `${name}` (the whole string).
    pub(crate) fn parse_placeholder(s: &str) -> Option<Result<Var, String>> {
        let name = s.strip_prefix("${")?.strip_suffix('}')?;
        Some(match name {
            "client_id" => Ok(Var::ClientId),
            "username" => Ok(Var::Username),
            "cert_cn" => Ok(Var::CertCn),
            "class" => Ok(Var::Class),
            other => Err(format!(
                "unknown variable `${{{other}}}` (known: client_id, username, cert_cn, class)"
            )),
        })
    }

    /// The variable's name as written between `${` and `}`.
    pub fn name(self) -> &'static str {
        match self {
            Var::ClientId => "client_id",
            Var::Username => "username",
            Var::CertCn => "cert_cn",
            Var::Class => "class",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            Var::ClientId => 1,
            Var::Username => 2,
            Var::CertCn => 4,
            Var::Class => 8,
        }
    }
}

/// Whether an identity value may be substituted as one topic level: not
/// empty, no `/`, `+`, `#`, no NUL or other control character, and not
/// starting with `$` (which would let a value reach reserved topics).
pub fn valid_level_value(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with('$')
        && !v
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
}

/// Resolved variable values for one request; `None` = absent or invalid, in
/// which case any pattern using it matches nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Values<'a> {
    pub client_id: Option<&'a str>,
    pub username: Option<&'a str>,
    pub cert_cn: Option<&'a str>,
    pub class: Option<&'a str>,
}

impl<'a> Values<'a> {
    pub(crate) fn new(
        client_id: &'a str,
        username: Option<&'a str>,
        cert_cn: Option<&'a str>,
        class: &'a str,
    ) -> Self {
        let ok = |v: &'a str| valid_level_value(v).then_some(v);
        Values {
            client_id: ok(client_id),
            username: username.and_then(ok),
            cert_cn: cert_cn.and_then(ok),
            class: ok(class),
        }
    }

    pub(crate) fn get(&self, v: Var) -> Option<&'a str> {
        match v {
            Var::ClientId => self.client_id,
            Var::Username => self.username,
            Var::CertCn => self.cert_cn,
            Var::Class => self.class,
        }
    }
}

/// One level of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Level {
    Lit(Box<str>),
    Var(Var),
    Plus,
    Hash,
}

/// A level after substitution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub<'a> {
    Lit(&'a str),
    Plus,
    Hash,
}

/// A level of a requested filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FLevel<'a> {
    Lit(&'a str),
    Plus,
    Hash,
}

/// A compiled topic pattern from a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    levels: Box<[Level]>,
}

impl Pattern {
    /// Parses a rule pattern. Variables must be whole levels; `#` only last;
    /// `$share/…` is rejected (rules apply to the underlying filter).
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("empty topic pattern".into());
        }
        if text.contains('\0') {
            return Err("topic pattern contains NUL".into());
        }
        if text.starts_with("$share/") || text == "$share" {
            return Err(
                "patterns apply to the filter inside `$share/{group}/…`; write the filter and use `share_groups`"
                    .into(),
            );
        }
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > MAX_LEVELS {
            return Err(format!("more than {MAX_LEVELS} levels"));
        }
        let mut levels = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let level = match *p {
                "+" => Level::Plus,
                "#" if i + 1 == parts.len() => Level::Hash,
                "#" => return Err("`#` must be the last level".into()),
                s if s.contains("${") => match Var::parse_placeholder(s) {
                    Some(Ok(v)) => Level::Var(v),
                    Some(Err(e)) => return Err(e),
                    None => {
                        return Err(format!(
                            "variable in `{s}` must be a whole level (e.g. `dev/${{client_id}}/#`)"
                        ));
                    }
                },
                s if s.contains(['+', '#']) => {
                    return Err(format!("`+`/`#` must be a whole level, found `{s}`"));
                }
                s => Level::Lit(s.into()),
            };
            levels.push(level);
        }
        Ok(Pattern {
            text: text.into(),
            levels: levels.into(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The leading literal levels (the rule index files a rule under them).
    pub(crate) fn literal_prefix(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().map_while(|l| match l {
            Level::Lit(s) => Some(&**s),
            _ => None,
        })
    }

    /// Variables used by this pattern.
    pub(crate) fn vars(&self) -> VarSet {
        let mut set = VarSet::default();
        for l in self.levels.iter() {
            if let Level::Var(v) = l {
                set.insert(*v);
            }
        }
        set
    }

    /// Whether the pattern is exactly `#` or `+/#`-like (covers everything).
    pub(crate) fn is_everything(&self) -> bool {
        matches!(&*self.levels, [Level::Hash] | [Level::Plus, Level::Hash])
    }

    fn sub_at<'a>(&'a self, i: usize, vals: &Values<'a>) -> Option<Option<Sub<'a>>> {
        Some(match self.levels.get(i) {
            None => None,
            Some(Level::Lit(s)) => Some(Sub::Lit(s)),
            Some(Level::Var(v)) => Some(Sub::Lit(vals.get(*v)?)),
            Some(Level::Plus) => Some(Sub::Plus),
            Some(Level::Hash) => Some(Sub::Hash),
        })
    }

    fn starts_with_wildcard(&self) -> bool {
        matches!(self.levels.first(), Some(Level::Plus | Level::Hash))
    }

    /// Whether the concrete topic name is matched. `None` values make
    /// patterns using them match nothing.
    pub(crate) fn matches_topic(&self, topic: &str, vals: &Values<'_>) -> bool {
        if topic.starts_with('$') && self.starts_with_wildcard() {
            return false;
        }
        let mut t = topic.split('/');
        let mut i = 0;
        loop {
            let Some(p) = self.sub_at(i, vals) else {
                return false;
            };
            match (p, t.next()) {
                (Some(Sub::Hash), _) => return true,
                (None, None) => return true,
                (Some(Sub::Plus), Some(_)) => {}
                (Some(Sub::Lit(a)), Some(b)) if a == b => {}
                _ => return false,
            }
            i += 1;
        }
    }

    /// Whether every topic matched by `filter` is matched by the pattern.
    pub(crate) fn covers_filter(&self, filter: &[FLevel<'_>], vals: &Values<'_>) -> bool {
        if self.starts_with_wildcard()
            && matches!(filter.first(), Some(FLevel::Lit(s)) if s.starts_with('$'))
        {
            return false;
        }
        let mut i = 0;
        loop {
            let Some(p) = self.sub_at(i, vals) else {
                return false;
            };
            match (p, filter.get(i)) {
                (Some(Sub::Hash), _) => return true,
                (None, None) => return true,
                (Some(Sub::Plus), Some(FLevel::Lit(_) | FLevel::Plus)) => {}
                // A filter of just `#` is "one or more levels" (an empty
                // topic is invalid), which `+/#` covers exactly.
                (Some(Sub::Plus), Some(FLevel::Hash))
                    if i == 0 && matches!(self.sub_at(1, vals), Some(Some(Sub::Hash))) =>
                {
                    return true;
                }
                (Some(Sub::Lit(a)), Some(FLevel::Lit(b))) if a == *b => {}
                _ => return false,
            }
            i += 1;
        }
    }

    /// Whether some topic is matched by both the pattern and `filter`.
    pub(crate) fn overlaps_filter(&self, filter: &[FLevel<'_>], vals: &Values<'_>) -> bool {
        let dollar =
            |l: Option<&FLevel<'_>>| matches!(l, Some(FLevel::Lit(s)) if s.starts_with('$'));
        if self.starts_with_wildcard() && dollar(filter.first()) {
            return false;
        }
        if matches!(filter.first(), Some(FLevel::Plus | FLevel::Hash))
            && matches!(self.sub_at(0, vals), Some(Some(Sub::Lit(s)))  if s.starts_with('$'))
        {
            return false;
        }
        let mut i = 0;
        loop {
            let Some(p) = self.sub_at(i, vals) else {
                return false;
            };
            match (p, filter.get(i)) {
                (Some(Sub::Hash), _) | (_, Some(FLevel::Hash)) => return true,
                (None, None) => return true,
                (Some(Sub::Plus), Some(_)) | (Some(Sub::Lit(_)), Some(FLevel::Plus)) => {}
                (Some(Sub::Lit(a)), Some(FLevel::Lit(b))) if a == *b => {}
                _ => return false,
            }
            i += 1;
        }
    }

    /// Symbolic inclusion between two rule patterns (variables compared by
    /// name): every topic `other` can match, `self` matches too. Used only
    /// for shadowing warnings, so it may answer `false` conservatively.
    pub(crate) fn covers_pattern(&self, other: &Pattern) -> bool {
        let dollar = matches!(other.levels.first(), Some(Level::Lit(s)) if s.starts_with('$'));
        if self.starts_with_wildcard() && dollar {
            return false;
        }
        let mut i = 0;
        loop {
            match (self.levels.get(i), other.levels.get(i)) {
                (Some(Level::Hash), _) => return true,
                (None, None) => return true,
                (Some(Level::Plus), Some(Level::Lit(_) | Level::Plus | Level::Var(_))) => {}
                (Some(Level::Lit(a)), Some(Level::Lit(b))) if a == b => {}
                (Some(Level::Var(a)), Some(Level::Var(b))) if a == b => {}
                _ => return false,
            }
            i += 1;
        }
    }
}

/// Validates a concrete topic name (publish/receive/retain/will).
pub(crate) fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 65_535
        && !topic.contains(['+', '#', '\0'])
        && topic.split('/').nth(MAX_LEVELS).is_none()
}

/// A subscription request split into its share group (if any) and levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedFilter<'a> {
    pub share_group: Option<&'a str>,
    pub filter: &'a str,
    pub levels: Vec<FLevel<'a>>,
}

/// Parses a subscribe filter, unwrapping `$share/{group}/{filter}`.
/// Returns `None` for anything malformed (treated as deny).
pub(crate) fn parse_filter(raw: &str) -> Option<ParsedFilter<'_>> {
    if raw.is_empty() || raw.len() > 65_535 || raw.contains('\0') {
        return None;
    }
    let (share_group, filter) = match raw.strip_prefix("$share/") {
        Some(rest) => {
            let (group, filter) = rest.split_once('/')?;
            if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
                return None;
            }
            (Some(group), filter)
        }
        None if raw == "$share" => return None,
        None => (None, raw),
    };
    let mut levels = Vec::new();
    let mut parts = filter.split('/').peekable();
    while let Some(p) = parts.next() {
        if levels.len() >= MAX_LEVELS {
            return None;
        }
        levels.push(match p {
            "+" => FLevel::Plus,
            "#" if parts.peek().is_none() => FLevel::Hash,
            s if s.contains(['+', '#']) => return None,
            s => FLevel::Lit(s),
        });
    }
    Some(ParsedFilter {
        share_group,
        filter,
        levels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals<'a>(cid: &'a str, user: Option<&'a str>) -> Values<'a> {
        Values::new(cid, user, None, "sensor")
    }
    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }
    fn f(s: &str) -> Vec<FLevel<'_>> {
        parse_filter(s).unwrap().levels
    }

    #[test]
    fn pattern_parse_errors() {
        for bad in [
            "",
            "a/#/b",
            "a+",
            "+x/y",
            "dev-${client_id}",
            "${nope}/a",
            "$share/g/a",
            "a\0b",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["#", "+/a", "$SYS/#", "dev/${client_id}/#", "a//b", "/"] {
            assert!(Pattern::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn topic_matching() {
        let v = vals("c1", None);
        assert!(p("a/+/c").matches_topic("a/b/c", &v));
        assert!(!p("a/+/c").matches_topic("a/b/d", &v));
        assert!(p("a/#").matches_topic("a", &v));
        assert!(p("a/#").matches_topic("a/b/c", &v));
        assert!(!p("a/b").matches_topic("a/b/c", &v));
        assert!(!p("a/b/c").matches_topic("a/b", &v));
        assert!(p("dev/${client_id}/#").matches_topic("dev/c1/x", &v));
        assert!(!p("dev/${client_id}/#").matches_topic("dev/c2/x", &v));
        assert!(!p("dev/${username}/#").matches_topic("dev/c1/x", &v));
    }

    #[test]
    fn dollar_topics_need_explicit_patterns() {
        let v = vals("c1", None);
        assert!(!p("#").matches_topic("$SYS/x", &v));
        assert!(!p("+/x").matches_topic("$SYS/x", &v));
        assert!(p("$SYS/#").matches_topic("$SYS/x", &v));
        assert!(!p("#").covers_filter(&f("$SYS/#"), &v));
        assert!(!p("+/#").overlaps_filter(&f("$SYS/x"), &v));
        assert!(!p("$SYS/#").overlaps_filter(&f("#"), &v));
        assert!(p("$SYS/#").covers_filter(&f("$SYS/broker/+"), &v));
    }

    #[test]
    fn level_values() {
        for bad in ["", "#", "+", "a/b", "x\0y", "a\nb", "$SYS"] {
            assert!(!valid_level_value(bad), "{bad:?}");
        }
        assert!(valid_level_value("sensor-0001"));
        assert!(valid_level_value("ünïcode"));
    }

    #[test]
    fn filter_inclusion() {
        let v = vals("c1", None);
        assert!(p("a/b/#").covers_filter(&f("a/b/c"), &v));
        assert!(p("a/b/#").covers_filter(&f("a/b"), &v));
        assert!(p("a/b/#").covers_filter(&f("a/b/#"), &v));
        assert!(!p("a/b/#").covers_filter(&f("a/#"), &v));
        assert!(!p("a/b/#").covers_filter(&f("a/+/c"), &v));
        assert!(p("a/+/c").covers_filter(&f("a/+/c"), &v));
        assert!(!p("a/+/c").covers_filter(&f("a/#"), &v));
        assert!(!p("a/b").covers_filter(&f("a/+"), &v));
        assert!(p("+/#").covers_filter(&f("#"), &v));
    }

    #[test]
    fn filter_overlap() {
        let v = vals("c1", None);
        assert!(p("a/b/secret").overlaps_filter(&f("a/#"), &v));
        assert!(p("a/b/secret").overlaps_filter(&f("+/+/secret"), &v));
        assert!(!p("a/b/secret").overlaps_filter(&f("a/+"), &v));
        assert!(p("a/#").overlaps_filter(&f("a"), &v));
        assert!(p("a").overlaps_filter(&f("a/#"), &v));
        assert!(!p("x/#").overlaps_filter(&f("a/#"), &v));
    }

    #[test]
    fn share_parsing() {
        let s = parse_filter("$share/g/secret/#").unwrap();
        assert_eq!(s.share_group, Some("g"));
        assert_eq!(s.filter, "secret/#");
        for bad in [
            "$share/+/x",
            "$share//x",
            "$share/g",
            "$share/g/",
            "$share",
            "a/#/b",
            "a+",
        ] {
            assert!(parse_filter(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn symbolic_pattern_cover() {
        assert!(p("a/#").covers_pattern(&p("a/${client_id}/x")));
        assert!(p("a/${client_id}/#").covers_pattern(&p("a/${client_id}/x")));
        assert!(!p("a/${username}/#").covers_pattern(&p("a/${client_id}/x")));
        assert!(!p("a/x/#").covers_pattern(&p("a/${client_id}/x")));
        assert!(!p("#").covers_pattern(&p("$SYS/#")));
    }

    mod oracle {
        use super::super::*;
        use proptest::prelude::*;

        const ALPHA: [&str; 4] = ["a", "b", "$s", "c"];

        /// Every topic of up to `depth` levels over `ALPHA`.
        fn all_topics(depth: usize) -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            let mut frontier: Vec<String> = ALPHA.iter().map(|s| s.to_string()).collect();
            for _ in 0..depth {
                out.extend(frontier.iter().cloned());
                frontier = frontier
                    .iter()
                    .flat_map(|t| ALPHA.iter().map(move |l| format!("{t}/{l}")))
                    .collect();
            }
            out
        }

        /// Textbook MQTT matching, written independently of the engine.
        fn naive_match(filter: &str, topic: &str) -> bool {
            if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
                return false;
            }
            let f: Vec<&str> = filter.split('/').collect();
            let t: Vec<&str> = topic.split('/').collect();
            fn go(f: &[&str], t: &[&str]) -> bool {
                match (f.first(), t.first()) {
                    (Some(&"#"), _) => true,
                    (None, None) => true,
                    (Some(&"+"), Some(_)) => go(&f[1..], &t[1..]),
                    (Some(a), Some(b)) if a == b => go(&f[1..], &t[1..]),
                    _ => false,
                }
            }
            go(&f, &t)
        }

        fn level() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["a", "b", "$s", "+"])
        }

        fn filter() -> impl Strategy<Value = String> {
            (prop::collection::vec(level(), 0..=3), any::<bool>()).prop_map(|(mut v, hash)| {
                if hash || v.is_empty() {
                    v.push("#");
                }
                v.join("/")
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn covers_and_overlaps_agree_with_brute_force(p in filter(), f in filter()) {
                let vals = Values::new("c", None, None, "k");
                let pat = Pattern::parse(&p).unwrap();
                let lv = parse_filter(&f).unwrap().levels;
                let topics = all_topics(5);
                let covered = topics.iter().filter(|t| naive_match(&f, t)).all(|t| naive_match(&p, t));
                let overlap = topics.iter().any(|t| naive_match(&f, t) && naive_match(&p, t));
                prop_assert_eq!(pat.covers_filter(&lv, &vals), covered, "covers({}, {})", p, f);
                prop_assert_eq!(pat.overlaps_filter(&lv, &vals), overlap, "overlaps({}, {})", p, f);
                for t in topics.iter().take(200) {
                    prop_assert_eq!(pat.matches_topic(t, &vals), naive_match(&p, t), "match({}, {})", p, t);
                }
            }
        }
    }
}
