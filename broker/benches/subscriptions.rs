//! Subscription index benchmarks on IoT-fleet-shaped filter sets.
//!
//! Filters look like `site/{s}/device/{d}/telemetry/{m}`; about 5% have one of
//! the variable levels replaced by `+` and about 1% end in `#`. We measure the
//! cost of matching one random telemetry topic against indexes of 100k and 1M
//! filters, insert throughput, and insert+remove churn on the 1M index. Build
//! time and resident-memory growth per filter are printed to stderr.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use starling_broker::subscriptions::SubscriptionIndex;
use starling_broker::topic::{TopicFilter, TopicLimits, TopicName};

const DEVICES_PER_SITE: u64 = 100;
const METRICS: u64 = 10;

/// Small deterministic PRNG (xorshift64*) so runs are comparable and no extra
/// dependency is needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The `i`-th filter of a fleet: literal for ~94%, one `+` for ~5%, `#` for ~1%.
fn fleet_filter(i: u64, rng: &mut Rng) -> String {
    let m = i % METRICS;
    let d = (i / METRICS) % DEVICES_PER_SITE;
    let s = i / (METRICS * DEVICES_PER_SITE);
    match rng.below(100) {
        0 if rng.below(2) == 0 => format!("site/{s}/device/{d}/#"),
        0 => format!("site/{s}/#"),
        1..=5 => match rng.below(3) {
            0 => format!("site/+/device/{d}/telemetry/metric{m}"),
            1 => format!("site/{s}/device/+/telemetry/metric{m}"),
            _ => format!("site/{s}/device/{d}/telemetry/+"),
        },
        _ => format!("site/{s}/device/{d}/telemetry/metric{m}"),
    }
}

fn parse_filter(s: &str) -> Option<TopicFilter> {
    TopicFilter::parse(s, &TopicLimits::default()).ok()
}

/// Resident set size in bytes from /proc (Linux only; `None` elsewhere).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Builds an index of `n` fleet filters, keyed by subscriber number.
fn build(n: u64) -> SubscriptionIndex<u64, u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let before = rss_bytes();
    let start = Instant::now();
    let mut idx = SubscriptionIndex::new();
    for i in 0..n {
        if let Some(f) = parse_filter(&fleet_filter(i, &mut rng)) {
            idx.insert(&f, i, 1);
        }
    }
    let elapsed = start.elapsed();
    let growth = rss_bytes()
        .zip(before)
        .map(|(after, before)| after.saturating_sub(before));
    eprintln!(
        "built {} filters in {:.2?} ({:.0} inserts/s); RSS growth {} ({} B/filter)",
        idx.len(),
        elapsed,
        n as f64 / elapsed.as_secs_f64(),
        growth.map_or("n/a".into(), |g| format!("{:.1} MiB", g as f64 / 1048576.0)),
        growth.map_or("n/a".into(), |g| (g / n.max(1)).to_string()),
    );
    idx
}

/// Random telemetry topics within the fleet (every one matches at least the
/// literal filter of that device/metric unless it was replaced by a wildcard).
fn random_topics(n: u64, count: usize) -> Vec<TopicName> {
    let sites = (n / (METRICS * DEVICES_PER_SITE)).max(1);
    let mut rng = Rng(42);
    (0..count)
        .filter_map(|_| {
            let t = format!(
                "site/{}/device/{}/telemetry/metric{}",
                rng.below(sites),
                rng.below(DEVICES_PER_SITE),
                rng.below(METRICS)
            );
            TopicName::parse(ByteString::from(t), &TopicLimits::default()).ok()
        })
        .collect()
}

fn bench_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("for_each_match");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in [100_000u64, 1_000_000] {
        let idx = build(n);
        let topics = random_topics(n, 4096);
        let mut matched = 0u64;
        for t in &topics {
            idx.for_each_match(t, |_, _| matched += 1);
        }
        eprintln!(
            "{n}: mean matches per topic {:.2}",
            matched as f64 / topics.len().max(1) as f64
        );
        let mut cycle = topics.iter().cycle();
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                let mut hits = 0u32;
                if let Some(t) = cycle.next() {
                    idx.for_each_match(black_box(t), |_, qos| hits += u32::from(*qos));
                }
                black_box(hits)
            })
        });
        // Unsubscribe + subscribe of a new device on the full index: the
        // shared prefix exists, the device-specific tail is created and pruned.
        if n == 1_000_000 {
            let mut idx = idx;
            let churn: Vec<TopicFilter> = (0..1024)
                .filter_map(|i| parse_filter(&format!("site/{i}/device/new{i}/telemetry/+")))
                .collect();
            let mut cycle = churn.iter().cycle();
            group.bench_function("insert_remove_1000000", |b| {
                b.iter(|| {
                    if let Some(f) = cycle.next() {
                        idx.insert(f, u64::MAX, 1);
                        black_box(idx.remove(f, &u64::MAX));
                    }
                })
            });
        }
    }
    group.finish();
}

fn bench_insert(c: &mut Criterion) {
    const N: u64 = 10_000;
    let mut rng = Rng(7);
    let filters: Vec<TopicFilter> = (0..N)
        .filter_map(|i| parse_filter(&fleet_filter(i * 37, &mut rng)))
        .collect();
    let mut group = c.benchmark_group("insert");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(N));
    group.bench_function("10k_into_empty", |b| {
        b.iter_batched(
            SubscriptionIndex::<u64, u8>::new,
            |mut idx| {
                for (i, f) in (0u64..).zip(&filters) {
                    idx.insert(f, i, 1);
                }
                idx
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_match, bench_insert);
criterion_main!(benches);
