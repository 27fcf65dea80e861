//! MQTT topic filters that scope a plugin to some topics.

/// A validated topic filter (`+` one level, `#` the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    levels: Vec<String>,
}

impl Filter {
    /// Parses a filter, refusing what MQTT refuses (`a/#/b`, `a+`, empty).
    pub fn parse(s: &str) -> Result<Filter, String> {
        if s.is_empty() {
            return Err("empty topic filter".into());
        }
        if s.contains('\0') {
            return Err(format!("topic filter {s:?} contains NUL"));
        }
        let levels: Vec<String> = s.split('/').map(str::to_owned).collect();
        let last = levels.len() - 1;
        for (i, l) in levels.iter().enumerate() {
            let bad_hash = l.contains('#') && (l != "#" || i != last);
            let bad_plus = l.contains('+') && l != "+";
            if bad_hash || bad_plus {
                return Err(format!(
                    "topic filter {s:?}: '+' must fill a level and '#' must be the whole last level"
                ));
            }
        }
        Ok(Filter { levels })
    }

    /// True when `topic` (a valid topic name) matches. Wildcards at the
    /// first level do not match `$`-topics [MQTT-4.7.2-1].
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('/');
        for (i, want) in self.levels.iter().enumerate() {
            if want == "#" {
                return !(i == 0 && topic.starts_with('$'));
            }
            let Some(got) = parts.next() else {
                return false;
            };
            if want == "+" {
                if i == 0 && got.starts_with('$') {
                    return false;
                }
            } else if want != got {
                return false;
            }
        }
        parts.next().is_none()
    }
}

/// Any of `filters` matches `topic`.
pub(crate) fn any_matches(filters: &[Filter], topic: &str) -> bool {
    filters.iter().any(|f| f.matches(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(f: &str, t: &str) -> bool {
        Filter::parse(f).unwrap().matches(t)
    }

    #[test]
    fn wildcards() {
        assert!(m("a/+/c", "a/b/c"));
        assert!(!m("a/+/c", "a/b/d"));
        assert!(!m("a/+", "a/b/c"));
        assert!(m("a/#", "a"));
        assert!(m("a/#", "a/b/c"));
        assert!(m("#", "a/b"));
        assert!(!m("#", "$SYS/x"));
        assert!(!m("+/x", "$SYS/x"));
        assert!(m("$SYS/#", "$SYS/x"));
        assert!(m("a/b", "a/b"));
        assert!(!m("a/b", "a/b/c"));
        assert!(!m("a/b/c", "a/b"));
        assert!(m("a//b", "a//b"));
    }

    #[test]
    fn invalid_filters_are_refused() {
        for f in ["", "a/#/b", "a#", "a+/b", "#/a", "a/+b"] {
            assert!(Filter::parse(f).is_err(), "{f:?}");
        }
    }
}
