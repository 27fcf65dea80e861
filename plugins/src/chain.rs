//! The ordered list of plugins the broker calls, with their counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Client, ConfigError, Plugin, PluginConfig, Publish, Rejection, Verdict};

/// Hooks that can refuse, for the per-plugin counters.
const HOOKS: [&str; 3] = ["connect", "publish", "subscribe"];

/// A refusal and the plugin that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Name of the plugin that refused.
    pub plugin: Arc<str>,
    /// Why.
    pub reason: Rejection,
}

struct Entry {
    plugin: Arc<dyn Plugin>,
    name: Arc<str>,
    /// Refusals by hook, in `HOOKS` order.
    rejected: [AtomicU64; 3],
}

/// Plugins in the order they run; the first refusal wins and the rest are
/// not asked. An empty chain costs the broker one branch per hook point.
#[derive(Default)]
pub struct PluginChain {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for PluginChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &*e.name))
            .finish()
    }
}

impl PluginChain {
    /// Builds the built-in plugins from their configuration, in order.
    /// Every setting is checked first: the error names the plugin (by
    /// position and kind) and what is wrong.
    pub fn build(configs: &[PluginConfig]) -> Result<PluginChain, ConfigError> {
        let mut plugins = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            plugins.push(c.build(i)?);
        }
        Ok(PluginChain::with(plugins))
    }

    /// A chain of the given plugins (for embedders with their own).
    pub fn with(plugins: Vec<Arc<dyn Plugin>>) -> PluginChain {
        PluginChain {
            entries: plugins
                .into_iter()
                .map(|plugin| Entry {
                    name: Arc::from(plugin.name()),
                    plugin,
                    rejected: Default::default(),
                })
                .collect(),
        }
    }

    /// No plugin configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs `on_connect` of every plugin until one refuses.
    pub fn on_connect(&self, client: &Client<'_>) -> Result<(), Rejected> {
        self.run(0, |p| p.on_connect(client))
    }

    /// Runs `on_publish` of every plugin until one refuses.
    pub fn on_publish(&self, client: &Client<'_>, msg: &Publish<'_>) -> Result<(), Rejected> {
        self.run(1, |p| p.on_publish(client, msg))
    }

    /// Runs `on_subscribe` of every plugin until one refuses.
    pub fn on_subscribe(&self, client: &Client<'_>, filter: &str) -> Result<(), Rejected> {
        self.run(2, |p| p.on_subscribe(client, filter))
    }

    /// Tells every plugin that a connection ended.
    pub fn on_disconnect(&self, client: &Client<'_>) {
        for e in &self.entries {
            e.plugin.on_disconnect(client);
        }
    }

    /// Refusals so far: (plugin name, hook, count), for metrics.
    pub fn rejections(&self) -> Vec<(Arc<str>, &'static str, u64)> {
        let mut out = Vec::new();
        for e in &self.entries {
            for (hook, n) in HOOKS.iter().zip(&e.rejected) {
                out.push((e.name.clone(), *hook, n.load(Ordering::Relaxed)));
            }
        }
        out
    }

    fn run(
        &self,
        hook: usize,
        mut ask: impl FnMut(&dyn Plugin) -> Verdict,
    ) -> Result<(), Rejected> {
        for e in &self.entries {
            if let Verdict::Reject(reason) = ask(&*e.plugin) {
                if let Some(n) = e.rejected.get(hook) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                return Err(Rejected {
                    plugin: e.name.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client as client;

    struct Deny(&'static str);
    impl Plugin for Deny {
        fn name(&self) -> &str {
            self.0
        }
        fn on_subscribe(&self, _: &Client<'_>, filter: &str) -> Verdict {
            if filter == "#" {
                Verdict::Reject(Rejection::NotAuthorized)
            } else {
                Verdict::Continue
            }
        }
    }

    struct Count(AtomicU64);
    impl Plugin for Count {
        fn name(&self) -> &str {
            "count"
        }
        fn on_subscribe(&self, _: &Client<'_>, _: &str) -> Verdict {
            self.0.fetch_add(1, Ordering::Relaxed);
            Verdict::Continue
        }
    }

    #[test]
    fn first_refusal_wins_and_later_plugins_are_not_asked() {
        let count = Arc::new(Count(AtomicU64::new(0)));
        let chain = PluginChain::with(vec![Arc::new(Deny("deny-all-topics")), count.clone()]);
        assert_eq!(chain.on_subscribe(&client(), "a/b"), Ok(()));
        let err = chain.on_subscribe(&client(), "#").unwrap_err();
        assert_eq!(&*err.plugin, "deny-all-topics");
        assert_eq!(err.reason, Rejection::NotAuthorized);
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            1,
            "not asked after the refusal"
        );
        let counts = chain.rejections();
        assert!(counts.contains(&(Arc::from("deny-all-topics"), "subscribe", 1)));
        assert!(counts.contains(&(Arc::from("deny-all-topics"), "publish", 0)));
    }

    #[test]
    fn default_hooks_continue() {
        let chain = PluginChain::with(vec![Arc::new(Deny("d"))]);
        let msg = Publish {
            topic: "t",
            payload: b"x",
            qos: 1,
            retain: false,
        };
        assert_eq!(chain.on_publish(&client(), &msg), Ok(()));
        assert_eq!(chain.on_connect(&client()), Ok(()));
        assert!(PluginChain::default().is_empty());
    }
}
