//! Compiled rules: effect, actions, principal selectors, topic patterns and
//! conditions. Built by `compile`, evaluated by `decide`.

use std::fmt;
use std::net::IpAddr;

use crate::topic::{Pattern, Values, Var};

/// What a client is trying to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// CONNECT (topic ignored; client-id binding, listener, TLS, zones).
    Connect,
    /// PUBLISH to a topic name.
    Publish,
    /// SUBSCRIBE to a filter (`$share/{group}/{filter}` accepted).
    Subscribe,
    /// Delivery of a message on a topic to this client (incl. retained and
    /// queued messages; re-checked at delivery).
    Receive,
    /// Storing a retained message on a topic (in addition to `publish`).
    Retain,
    /// Setting (at CONNECT) and firing a Will on a topic.
    Will,
}

impl Action {
    /// Every action, in index order.
    pub const ALL: [Action; 6] = [
        Action::Connect,
        Action::Publish,
        Action::Subscribe,
        Action::Receive,
        Action::Retain,
        Action::Will,
    ];

    /// The action's name in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Receive => "receive",
            Action::Retain => "retain",
            Action::Will => "will",
        }
    }

    /// Parses a policy-file action name.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a rule grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Grants the action unless some deny rule also matches.
    Allow,
    /// Refuses the action, whatever allow rules say.
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        })
    }
}

/// A small set of variables (bit set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VarSet(u8);

impl VarSet {
    pub(crate) fn insert(&mut self, v: Var) {
        self.0 |= v.bit();
    }
    pub(crate) fn union(self, o: VarSet) -> VarSet {
        VarSet(self.0 | o.0)
    }
    /// Whether `v` is in the set.
    pub fn contains(self, v: Var) -> bool {
        self.0 & v.bit() != 0
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The variables in the set.
    pub fn iter(self) -> impl Iterator<Item = Var> {
        [Var::ClientId, Var::Username, Var::CertCn, Var::Class]
            .into_iter()
            .filter(move |v| self.contains(*v))
    }
}

/// Who a rule applies to. Names are interned to indexes at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Who {
    /// `*`: every principal, anonymous included.
    Everyone,
    /// `anonymous`: the anonymous principal.
    Anonymous,
    /// An identity by name.
    Identity(u32),
    /// `role:NAME`.
    Role(u32),
    /// `class:NAME`.
    Class(u32),
}

/// A string with `${var}` parts, for client-id binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub text: Box<str>,
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<str>),
    Var(Var),
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let (lit, tail) = rest.split_at(start);
            if !lit.is_empty() {
                parts.push(Part::Lit(lit.into()));
            }
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in `{text}`"))?;
            let (ph, after) = tail.split_at(end + 1);
            match Var::parse_placeholder(ph) {
                Some(Ok(v)) => parts.push(Part::Var(v)),
                Some(Err(e)) => return Err(e),
                None => return Err(format!("bad placeholder in `{text}`")),
            }
            rest = after;
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.into()));
        }
        Ok(Template {
            text: text.into(),
            parts: parts.into(),
        })
    }

    pub(crate) fn vars(&self) -> VarSet {
        let mut s = VarSet::default();
        for p in self.parts.iter() {
            if let Part::Var(v) = p {
                s.insert(*v);
            }
        }
        s
    }

    /// Matches `s` against the template; `exact = false` means "starts with".
    pub(crate) fn matches(&self, s: &str, vals: &Values<'_>, exact: bool) -> bool {
        let mut rest = s;
        for p in self.parts.iter() {
            let piece = match p {
                Part::Lit(l) => &**l,
                Part::Var(v) => match vals.get(*v) {
                    Some(x) => x,
                    None => return false,
                },
            };
            match rest.strip_prefix(piece) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        !exact || rest.is_empty()
    }
}

/// Conditions that must all hold for a rule to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conditions {
    pub listeners: Option<Box<[Box<str>]>>,
    pub tls: Option<bool>,
    /// Indexes into the policy's zone table.
    pub zones: Option<Box<[u32]>>,
    /// Bit `q` set = QoS `q` allowed. `0b111` = any.
    pub qos_mask: u8,
    pub retain: Option<bool>,
    pub client_id: Option<Template>,
    pub client_id_prefix: Option<Template>,
    pub share_groups: Option<Box<[Box<str>]>>,
}

impl Conditions {
    pub(crate) fn none() -> Conditions {
        Conditions {
            listeners: None,
            tls: None,
            zones: None,
            qos_mask: 0b111,
            retain: None,
            client_id: None,
            client_id_prefix: None,
            share_groups: None,
        }
    }

    /// Whether `self` holds whenever `other` holds (each condition of
    /// `self` is absent or identical). Conservative.
    pub(crate) fn weaker_or_equal(&self, other: &Conditions) -> bool {
        fn w<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || a == b
        }
        w(&self.listeners, &other.listeners)
            && w(&self.tls, &other.tls)
            && w(&self.zones, &other.zones)
            && self.qos_mask & other.qos_mask == other.qos_mask
            && w(&self.retain, &other.retain)
            && w(&self.client_id, &other.client_id)
            && w(&self.client_id_prefix, &other.client_id_prefix)
            && w(&self.share_groups, &other.share_groups)
    }
}

/// Why a rule did not apply (for `explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The request came in on another listener.
    Listener,
    /// The TLS condition did not hold.
    Tls,
    /// The source address is in none of the rule's zones.
    Zone,
    /// QoS above `max_qos` or not in `qos`.
    Qos,
    /// The retain flag differs from the condition.
    Retain,
    /// The client id does not match the `client_id`/`client_id_prefix` binding.
    ClientId,
    /// Not a shared subscription in one of `share_groups`.
    ShareGroup,
    /// No pattern matched (or covered the filter), or a variable it uses is
    /// absent or not a valid single level.
    Topic,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Miss::Listener => "listener not in `listeners`",
            Miss::Tls => "`tls` condition not met",
            Miss::Zone => "source address in none of `zones`",
            Miss::Qos => "QoS not permitted",
            Miss::Retain => "`retain` condition not met",
            Miss::ClientId => "client id does not match binding",
            Miss::ShareGroup => "not a shared subscription in `share_groups`",
            Miss::Topic => "topic not matched (or a variable it uses is absent/invalid)",
        })
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub id: Box<str>,
    pub effect: Effect,
    /// Bit `Action::index()` set = rule covers that action.
    pub actions: u8,
    pub who: Box<[Who]>,
    pub topics: Box<[Pattern]>,
    pub cond: Conditions,
    pub vars: VarSet,
    pub line: usize,
    pub col: usize,
}

/// The request as the rule evaluator sees it.
pub(crate) struct Ctx<'a> {
    pub vals: Values<'a>,
    pub client_id: &'a str,
    pub listener: &'a str,
    pub tls: bool,
    pub source: IpAddr,
    pub qos: u8,
    pub retain: bool,
    pub share_group: Option<&'a str>,
    pub zone_hit: &'a dyn Fn(u32, IpAddr) -> bool,
}

impl Rule {
    pub(crate) fn has_action(&self, a: Action) -> bool {
        self.actions & (1 << a.index()) != 0
    }

    /// Checks the conditions (not the principal, not the topic).
    pub(crate) fn check_conditions(&self, cx: &Ctx<'_>) -> Result<(), Miss> {
        let c = &self.cond;
        if c.listeners
            .as_ref()
            .is_some_and(|ls| !ls.iter().any(|l| **l == *cx.listener))
        {
            return Err(Miss::Listener);
        }
        if c.tls.is_some_and(|t| t != cx.tls) {
            return Err(Miss::Tls);
        }
        if c.zones
            .as_ref()
            .is_some_and(|zs| !zs.iter().any(|z| (cx.zone_hit)(*z, cx.source)))
        {
            return Err(Miss::Zone);
        }
        if cx.qos > 2 || c.qos_mask & (1 << cx.qos) == 0 {
            return Err(Miss::Qos);
        }
        if c.retain.is_some_and(|r| r != cx.retain) {
            return Err(Miss::Retain);
        }
        if c.client_id
            .as_ref()
            .is_some_and(|t| !t.matches(cx.client_id, &cx.vals, true))
            || c.client_id_prefix
                .as_ref()
                .is_some_and(|t| !t.matches(cx.client_id, &cx.vals, false))
        {
            return Err(Miss::ClientId);
        }
        if let Some(gs) = &c.share_groups {
            match cx.share_group {
                Some(g) if gs.iter().any(|x| **x == *g) => {}
                _ => return Err(Miss::ShareGroup),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_matching() {
        let vals = Values::new("ignored", Some("alice"), Some("sensor-1"), "sensor");
        let t = Template::parse("${cert_cn}").unwrap();
        assert!(t.matches("sensor-1", &vals, true));
        assert!(!t.matches("sensor-10", &vals, true));
        assert!(t.matches("sensor-10", &vals, false));
        let t = Template::parse("op-${username}-").unwrap();
        assert!(t.matches("op-alice-1", &vals, false));
        assert!(!t.matches("op-bob-1", &vals, false));
        let none = Values::new("c", None, None, "x");
        assert!(
            !Template::parse("${username}")
                .unwrap()
                .matches("", &none, true)
        );
        assert!(Template::parse("${bogus}").is_err());
        assert!(Template::parse("${cert_cn").is_err());
    }

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("read"), None);
    }
}
