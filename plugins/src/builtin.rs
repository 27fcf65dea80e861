//! The plugins that ship with Starling.

use serde::de::IgnoredAny;

use crate::filter::{Filter, any_matches};
use crate::{Client, Plugin, Publish, Rejection, Verdict};

/// Refuses publishes whose payload is not JSON (or not a JSON object with
/// the required top-level keys) on the configured topics: a malformed
/// reading is stopped at the edge instead of in every consumer.
pub(crate) struct JsonPayload {
    name: String,
    topics: Vec<Filter>,
    required_keys: Vec<String>,
}

impl JsonPayload {
    pub fn new(name: String, topics: Vec<Filter>, required_keys: Vec<String>) -> JsonPayload {
        JsonPayload {
            name,
            topics,
            required_keys,
        }
    }

    fn acceptable(&self, payload: &[u8]) -> bool {
        // serde_json bounds nesting depth (128), so a hostile payload of
        // brackets cannot exhaust the stack.
        if self.required_keys.is_empty() {
            return serde_json::from_slice::<IgnoredAny>(payload).is_ok();
        }
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload) {
            Ok(obj) => self.required_keys.iter().all(|k| obj.contains_key(k)),
            Err(_) => false,
        }
    }
}

impl Plugin for JsonPayload {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_publish(&self, _client: &Client<'_>, msg: &Publish<'_>) -> Verdict {
        // An empty retained publish deletes the retained message: allowed.
        let deletes_retained = msg.retain && msg.payload.is_empty();
        if deletes_retained || !any_matches(&self.topics, msg.topic) || self.acceptable(msg.payload)
        {
            Verdict::Continue
        } else {
            Verdict::Reject(Rejection::PayloadInvalid)
        }
    }
}

/// Refuses publishes larger than `max_bytes` on the configured topics.
pub(crate) struct PayloadLimit {
    name: String,
    topics: Vec<Filter>,
    max_bytes: usize,
}

impl PayloadLimit {
    pub fn new(name: String, topics: Vec<Filter>, max_bytes: usize) -> PayloadLimit {
        PayloadLimit {
            name,
            topics,
            max_bytes,
        }
    }
}

impl Plugin for PayloadLimit {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_publish(&self, _client: &Client<'_>, msg: &Publish<'_>) -> Verdict {
        if msg.payload.len() > self.max_bytes && any_matches(&self.topics, msg.topic) {
            Verdict::Reject(Rejection::TooLarge)
        } else {
            Verdict::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client as client;

    fn publish<'a>(topic: &'a str, payload: &'a [u8]) -> Publish<'a> {
        Publish {
            topic,
            payload,
            qos: 1,
            retain: false,
        }
    }

    fn json(keys: &[&str]) -> JsonPayload {
        JsonPayload::new(
            "j".into(),
            vec![Filter::parse("sensors/#").unwrap()],
            keys.iter().map(|k| k.to_string()).collect(),
        )
    }

    #[test]
    fn json_payload_checks_only_its_topics() {
        let p = json(&[]);
        let reject = Verdict::Reject(Rejection::PayloadInvalid);
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", b"{\"v\":1}")),
            Verdict::Continue
        );
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", b"21.5")),
            Verdict::Continue
        );
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", b"{\"v\":")),
            reject
        );
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", b"\xff\xfe")),
            reject
        );
        assert_eq!(
            p.on_publish(&client(), &publish("other/t", b"not json")),
            Verdict::Continue
        );
        let delete = Publish {
            retain: true,
            ..publish("sensors/t", b"")
        };
        assert_eq!(p.on_publish(&client(), &delete), Verdict::Continue);
    }

    #[test]
    fn json_payload_required_keys_and_hostile_nesting() {
        let p = json(&["ts", "value"]);
        let reject = Verdict::Reject(Rejection::PayloadInvalid);
        let ok = br#"{"ts": 1, "value": 2.5, "unit": "C"}"#;
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", ok)),
            Verdict::Continue
        );
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", br#"{"ts": 1}"#)),
            reject
        );
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", b"[1, 2]")),
            reject
        );
        let deep = "[".repeat(100_000);
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", deep.as_bytes())),
            reject
        );
        let p = json(&[]);
        assert_eq!(
            p.on_publish(&client(), &publish("sensors/t", deep.as_bytes())),
            reject
        );
    }

    #[test]
    fn payload_limit() {
        let p = PayloadLimit::new("l".into(), vec![Filter::parse("cmd/+").unwrap()], 4);
        assert_eq!(
            p.on_publish(&client(), &publish("cmd/a", b"1234")),
            Verdict::Continue
        );
        assert_eq!(
            p.on_publish(&client(), &publish("cmd/a", b"12345")),
            Verdict::Reject(Rejection::TooLarge)
        );
        assert_eq!(
            p.on_publish(&client(), &publish("cmd/a/b", b"12345")),
            Verdict::Continue
        );
    }
}
