//! Cluster-wide bans: replicated like every other piece of shared state, so
//! a client banned on one node is refused by all of them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BanKey {
    /// One client id.
    ClientId(String),
    /// One username.
    Username(String),
    /// Every source address in a network.
    Network(IpNet),
}

impl BanKey {
    /// `(kind, value)` as the admin API spells them.
    pub fn parts(&self) -> (&'static str, String) {
        match self {
            BanKey::ClientId(c) => ("client_id", c.clone()),
            BanKey::Username(u) => ("username", u.clone()),
            BanKey::Network(n) => ("network", n.to_string()),
        }
    }

    /// Parses the admin API's `(kind, value)`.
    pub fn from_parts(kind: &str, value: &str) -> Result<BanKey, String> {
        if value.is_empty() || value.len() > 1024 {
            return Err("value must be 1 to 1024 bytes".into());
        }
        match kind {
            "client_id" => Ok(BanKey::ClientId(value.to_owned())),
            "username" => Ok(BanKey::Username(value.to_owned())),
            "network" => value
                .parse::<IpNet>()
                .map(|n| BanKey::Network(n.trunc()))
                .or_else(|_| {
                    value
                        .parse::<IpAddr>()
                        .map(|ip| BanKey::Network(IpNet::from(ip)))
                })
                .map_err(|_| format!("not an address or CIDR network: {value}")),
            other => Err(format!(
                "unknown ban kind {other:?} (client_id, username, network)"
            )),
        }
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// When it ends (Unix ms).
    pub until_ms: u64,
    /// Why (shown by the admin API and in the refusal's event).
    pub reason: String,
}

/// The ban list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bans {
    bans: BTreeMap<BanKey, Ban>,
}

impl Bans {
    pub fn insert(&mut self, key: BanKey, ban: Ban) {
        self.bans.insert(key, ban);
    }

    pub fn remove(&mut self, key: &BanKey) -> bool {
        self.bans.remove(key).is_some()
    }

    /// Drops bans that ended at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        self.bans.retain(|_, b| b.until_ms > now_ms);
    }

    /// The ban that applies to this client at `now_ms`, if any.
    pub fn find(
        &self,
        client_id: &str,
        username: Option<&str>,
        ip: IpAddr,
        now_ms: u64,
    ) -> Option<(&BanKey, &Ban)> {
        let ip = ip.to_canonical();
        let active = |(_, b): &(&BanKey, &Ban)| b.until_ms > now_ms;
        let by_id = self
            .bans
            .get_key_value(&BanKey::ClientId(client_id.to_owned()));
        let by_user =
            username.and_then(|u| self.bans.get_key_value(&BanKey::Username(u.to_owned())));
        by_id
            .filter(active)
            .or_else(|| by_user.filter(active))
            .or_else(|| {
                self.bans
                    .iter()
                    .filter(|(k, _)| matches!(k, BanKey::Network(n) if n.contains(&ip)))
                    .find(active)
            })
    }

    /// Every ban, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&BanKey, &Ban)> {
        self.bans.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Effects, Response, State, StateLimits};

    fn state() -> State {
        State::new(StateLimits {
            max_queued_messages: 10,
            max_retained_messages: 10,
            max_sessions: 10,
        })
    }

    fn apply(s: &mut State, cmd: Command) -> Response {
        s.apply(cmd, &mut Effects::default())
    }

    #[test]
    fn bans_match_expire_and_survive_snapshots() {
        let mut s = state();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let net = BanKey::from_parts("network", "10.0.0.99/24").unwrap();
        assert_eq!(net, BanKey::Network("10.0.0.0/24".parse().unwrap()));
        for (key, until_ms) in [
            (net, 1_000),
            (BanKey::ClientId("flooder".into()), 2_000),
            (BanKey::Username("mallory".into()), 3_000),
        ] {
            let ban = Ban {
                until_ms,
                reason: "test".into(),
            };
            assert_eq!(apply(&mut s, Command::Ban { key, ban }), Response::Done);
        }
        let other: IpAddr = "10.0.1.7".parse().unwrap();
        assert!(s.banned("x", None, ip, 500).is_some(), "network");
        assert!(s.banned("x", None, other, 500).is_none());
        assert!(s.banned("flooder", None, other, 1_500).is_some());
        assert!(s.banned("x", Some("mallory"), other, 2_500).is_some());
        assert!(s.banned("x", None, ip, 1_000).is_none(), "ended");
        assert_eq!(s.active_bans(1_500), 2);

        let mut restored = state();
        restored.restore(&s.snapshot().unwrap()).unwrap();
        assert!(restored.banned("flooder", None, other, 1_500).is_some());

        apply(&mut s, Command::ExpireSessions { now_ms: 2_500 });
        assert_eq!(s.bans().count(), 1);
        let key = BanKey::Username("mallory".into());
        assert_eq!(
            apply(&mut s, Command::Unban { key: key.clone() }),
            Response::Done
        );
        assert_eq!(apply(&mut s, Command::Unban { key }), Response::NotFound);
    }

    #[test]
    fn ban_keys_are_validated() {
        assert!(BanKey::from_parts("network", "not-an-ip").is_err());
        assert!(BanKey::from_parts("planet", "x").is_err());
        assert!(BanKey::from_parts("client_id", "").is_err());
        assert_eq!(
            BanKey::from_parts("network", "2001:db8::1")
                .unwrap()
                .parts(),
            ("network", "2001:db8::1/128".to_owned())
        );
    }
}
