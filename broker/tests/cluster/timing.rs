//! Failover timing (measured and printed, not asserted). Run on demand:
//! `cargo test -p starling-broker --test cluster failover_timing -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use crate::harness::Cluster;
use crate::raw::RawClient;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Kills the leader with SIGKILL five times; measures the time until the
/// survivors agree on a new leader (admin API polled every 10 ms) and until
/// a persistent CONNECT on a survivor succeeds (retried every 10 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing measurement, run on demand with --ignored"]
async fn failover_timing() {
    let mut c = Cluster::start("timing", 3).await;
    let mut to_leader = Vec::new();
    let mut to_connect = Vec::new();
    for round in 0..5 {
        let leader = c.leader().await;
        let survivors: Vec<u64> = c.ids().into_iter().filter(|&i| i != leader).collect();
        let target = c.mqtt(survivors[round % 2]);
        c.kill9(leader);
        let t0 = Instant::now();
        let mut leader_at = None;
        let mut connect_at = None;
        let connect = async {
            loop {
                let id = format!("timing-{round}");
                if let Ok((cl, _)) = RawClient::connect(target, true, &id, true).await {
                    cl.disconnect().await;
                    return t0.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let elect = async {
            loop {
                if c.agreed_leader(&survivors).await.is_some() {
                    return t0.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (e, k) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(elect, connect)
        })
        .await
        .expect("no failover within 30 s");
        leader_at.get_or_insert(e);
        connect_at.get_or_insert(k);
        eprintln!(
            "round {round}: killed leader {leader}; new leader agreed after {e:?}, persistent CONNECT accepted after {k:?}"
        );
        to_leader.push(e);
        to_connect.push(k);
        c.restart(leader).await;
        c.await_ready(&c.ids()).await;
    }
    eprintln!(
        "failover (3 nodes, heartbeat 50 ms, election timeout 300–600 ms, debug build): \
         median new leader {:?} (all {:?}); median first persistent CONNECT {:?} (all {:?})",
        median(&mut to_leader.clone()),
        to_leader,
        median(&mut to_connect.clone()),
        to_connect
    );
}
