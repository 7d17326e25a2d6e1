//! Remote CPUs waking tasks while the owner parks: threads play the CPUs.
//!
//! Each remote thread owns one task and plays ping-pong with it: a round is
//! a burst of 1 to 8 wakes (all carrying the round number), then a wait
//! until the task has seen the round. The owner goes idle after each round
//! and parks, so the next round's first wake races with the park: a lost
//! wake-up leaves a remote thread waiting for ever, and the watchdog fails
//! the test. The counters check the no-storm bound: at most one
//! notification per park, and every wake either notified or was skipped.
//!
//! `cargo test` runs 2 × 500 000 rounds (4.5 million wakes, under a second
//! unoptimized on two cores); the ignored `tens_of_millions_of_remote_wakes`
//! runs ten times as many:
//! `cargo test -p executor --release --test remote -- --ignored --nocapture`.
#![cfg(not(loom))]

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::OnceLock;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use executor::host::ThreadSignal;
use executor::{Completion, Executor, Notifier, Parker, ReadySet};

/// A thread signal that counts the wakes that needed no notification.
struct CountingSignal {
    signal: ThreadSignal,
    skipped: AtomicU64,
}

impl Notifier for CountingSignal {
    fn notify(&self) {
        self.signal.notify();
    }
    fn skipped(&self) {
        self.skipped.fetch_add(1, Relaxed);
    }
}

impl Parker for CountingSignal {
    fn park(&self, ready: &ReadySet) {
        self.signal.park(ready);
    }
}

const REMOTES: usize = 2;

/// One remote "CPU" and its task.
struct Pair {
    round: AtomicU32,
    seen: AtomicU32,
    waker: OnceLock<Waker>,
}

impl Pair {
    const fn new() -> Self {
        Self {
            round: AtomicU32::new(0),
            seen: AtomicU32::new(0),
            waker: OnceLock::new(),
        }
    }
}

fn ping_pong(
    executor: &'static Executor<4, 256, CountingSignal>,
    pairs: &'static [Pair; REMOTES],
    rounds: u32,
) {
    let runner = executor.claim().unwrap();
    let handles: Vec<_> = pairs
        .iter()
        .map(|pair| {
            runner
                .spawn(poll_fn(move |cx| {
                    pair.waker.get_or_init(|| cx.waker().clone());
                    let round = pair.round.load(Acquire);
                    pair.seen.store(round, Release);
                    if round == rounds {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }))
                .unwrap()
        })
        .collect();
    let wakes = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        for pair in pairs {
            let (wakes, failed) = (&wakes, &failed);
            s.spawn(move || {
                while pair.waker.get().is_none() {
                    std::thread::yield_now();
                }
                let waker = pair.waker.get().unwrap();
                let mut sent = 0;
                for round in 1..=rounds {
                    if round % 1024 == 0 {
                        // Let the owner fall all the way asleep now and then.
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    pair.round.store(round, Release);
                    for _ in 0..1 + round % 8 {
                        waker.wake_by_ref();
                        sent += 1;
                    }
                    let since = Instant::now();
                    while pair.seen.load(Acquire) != round {
                        if since.elapsed() > Duration::from_secs(20) {
                            // The owner is asleep for ever: nothing else
                            // would end this test.
                            failed.store(true, Relaxed);
                            eprintln!("lost wake-up: round {round} never seen");
                            std::process::abort();
                        }
                        std::thread::yield_now();
                    }
                }
                wakes.fetch_add(sent, Relaxed);
            });
        }
        runner.run_until(executor.notifier(), || {
            handles.iter().all(|h| h.is_finished())
        });
    });
    assert!(!failed.load(Relaxed));
    for mut handle in handles {
        assert_eq!(handle.try_take(), Some(Completion::Finished(())));
    }
    let stats = executor.stats();
    let wakes = wakes.load(Relaxed);
    let skipped = executor.notifier().skipped.load(Relaxed);
    eprintln!(
        "{} rounds, {wakes} remote wakes in {:?}: {} notifications (IPIs), {skipped} skipped, {} parks",
        rounds as usize * REMOTES,
        start.elapsed(),
        stats.notified,
        stats.parks,
    );
    assert!(
        stats.notified <= stats.parks,
        "at most one notification per park: {stats:?}"
    );
    // Every wake either notified or was skipped.
    assert_eq!(stats.notified + skipped, wakes);
}

macro_rules! executor {
    () => {{
        static EXECUTOR: Executor<4, 256, CountingSignal> = Executor::new(CountingSignal {
            signal: ThreadSignal::new(),
            skipped: AtomicU64::new(0),
        });
        static PAIRS: [Pair; REMOTES] = [const { Pair::new() }; REMOTES];
        (&EXECUTOR, &PAIRS)
    }};
}

#[test]
fn remote_wakes_while_parking_lose_nothing() {
    let (executor, pairs) = executor!();
    ping_pong(executor, pairs, if cfg!(miri) { 30 } else { 500_000 });
}

#[test]
#[ignore = "45 million wakes: run with --release -- --ignored"]
fn tens_of_millions_of_remote_wakes() {
    let (executor, pairs) = executor!();
    ping_pong(executor, pairs, 5_000_000);
}
