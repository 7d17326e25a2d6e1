//! Loom models of the wake-versus-park race, on the real executor code:
//! the ready word, the run loop and the host parker all use the loom shim,
//! so loom explores every interleaving of their atomics, mutex and
//! condition variable. A lost wake-up would leave the owner blocked in the
//! parker for ever, which loom reports as a deadlock.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p executor --release --test loom --target-dir target/loom
//! ```
#![cfg(loom)]

use std::future::poll_fn;
use std::task::{Poll, Waker};

use executor::host::ThreadSignal;
use executor::{Completion, Executor};
use loom::sync::atomic::{AtomicBool, Ordering::*};
use loom::sync::{Arc, Mutex};

type Exec = Executor<2, 64, ThreadSignal>;

/// A fresh executor per model run (loom's atomics cannot live in a `static`).
fn executor() -> &'static Exec {
    Box::leak(Box::new(Executor::new(ThreadSignal::new())))
}

/// A one-shot event: a flag plus the waker of the task waiting for it.
#[derive(Default)]
struct Event {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// Waits for `event` (a task's future).
fn wait(event: &Arc<Event>) -> impl std::future::Future<Output = ()> + 'static {
    let event = event.clone();
    poll_fn(move |cx| {
        if event.set.load(Acquire) {
            return Poll::Ready(());
        }
        *event.waker.lock().unwrap() = Some(cx.waker().clone());
        if event.set.load(Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

impl Event {
    /// What a remote CPU does: publish, then wake.
    fn set(&self) {
        self.set.store(true, Release);
        let waker = self.waker.lock().unwrap().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[test]
fn remote_wake_versus_park() {
    loom::model(|| {
        let executor = executor();
        let event = Arc::new(Event::default());
        let runner = executor.claim().unwrap();
        let mut handle = runner.spawn(wait(&event)).unwrap();
        let remote = {
            let event = event.clone();
            loom::thread::spawn(move || event.set())
        };
        runner.run_until(executor.notifier(), || handle.is_finished());
        remote.join().unwrap();
        assert_eq!(handle.try_take(), Some(Completion::Finished(())));
        assert!(executor.stats().notified <= executor.stats().parks);
    });
}

#[test]
fn two_remote_wakers_versus_park() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let executor = executor();
        let events = [Arc::new(Event::default()), Arc::new(Event::default())];
        let runner = executor.claim().unwrap();
        let handles: Vec<_> = events
            .iter()
            .map(|e| runner.spawn(wait(e)).unwrap())
            .collect();
        let remotes: Vec<_> = events
            .iter()
            .map(|event| {
                let event = event.clone();
                loom::thread::spawn(move || event.set())
            })
            .collect();
        runner.run_until(executor.notifier(), || {
            handles.iter().all(|h| h.is_finished())
        });
        for remote in remotes {
            remote.join().unwrap();
        }
        let stats = executor.stats();
        assert!(stats.notified <= stats.parks, "{stats:?}");
    });
}

#[test]
fn remote_cancel_versus_park() {
    loom::model(|| {
        let executor = executor();
        let event = Arc::new(Event::default());
        let runner = executor.claim().unwrap();
        let mut handle = runner.spawn(wait(&event)).unwrap();
        let token = handle.cancel_token();
        let remote = loom::thread::spawn(move || token.cancel());
        runner.run_until(executor.notifier(), || handle.is_finished());
        let requested = remote.join().unwrap();
        assert!(requested, "the task cannot finish by itself");
        assert_eq!(handle.try_take(), Some(Completion::Cancelled));
    });
}

#[test]
fn flag_write_versus_registration() {
    loom::model(|| {
        let executor = executor();
        let flag = Arc::new(AtomicBool::new(false));
        let runner = executor.claim().unwrap();
        let spawner = runner.spawner();
        let waiting = flag.clone();
        let mut handle = runner
            .spawn(async move { spawner.wait_flag(move || waiting.load(Relaxed)).await })
            .unwrap();
        let remote = {
            let flag = flag.clone();
            loom::thread::spawn(move || {
                // The main kernel writes the status byte, then the IPI
                // handler wakes the flag waiters.
                flag.store(true, Relaxed);
                executor.wake_flag_waiters();
            })
        };
        runner.run_until(executor.notifier(), || handle.is_finished());
        remote.join().unwrap();
        assert_eq!(handle.try_take(), Some(Completion::Finished(())));
    });
}
