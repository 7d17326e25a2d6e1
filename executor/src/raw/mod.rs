//! The unsafe core: the ready word, the task slots, the waker and the poll
//! loop. Every `unsafe` block of the executor proper is in this folder; the
//! safe types in `runtime` are thin wrappers that uphold the one rule the
//! core relies on: *only the owner touches the slots*.
//!
//! One file per concern, each saying what it owns and who may touch it:
//!
//! | module | owns | touched by |
//! |---|---|---|
//! | [`ready`] | the ready word ([`ReadySet`]) and its protocol | any CPU (wake), the owner (take, park) |
//! | [`shared`] | [`Core`]: ready word, flag waiters, counters, notifier | any CPU |
//! | [`waker`] | the waker's vtable and its data ([`WakeRecord`](waker::WakeRecord)) | any CPU |
//! | [`state`] | a slot's `state` word (`RUN`, `LIVE`, generation) and [`Phase`] | the owner; cancel tokens clear `RUN` |
//! | [`task`] | a slot: [`Header`](task::Header), storage, the type-erased poll and drop | the owner |
//! | [`local`] | the owner's view of its slots: spawn, join, detach, release | the owner |
//! | [`run`] | the poll loop and what it does when user code panics | the owner |
//! | [`cancel`] | [`RawCancel`], the data of a cancel token | any CPU |
//!
//! The argument that no wake-up is lost lives in `ready`; the argument that
//! only the owner touches slots lives in `runtime`, and every `unsafe` here
//! relies on it.

mod cancel;
mod local;
mod ready;
mod run;
mod shared;
mod state;
mod task;
mod waker;

pub use ready::ReadySet;
pub use task::SLOT_OVERHEAD;

pub(crate) use cancel::RawCancel;
pub(crate) use local::{Local, Slot};
pub(crate) use run::Batch;
pub(crate) use shared::Core;
pub(crate) use state::Phase;
pub(crate) use task::{fits, Task};

/// The most tasks one executor holds: one bit each in the ready word, whose
/// bit 63 is the owner's `AWAKE` marker.
pub const MAX_TASKS: usize = 63;

/// The alignment of every slot's storage: futures and outputs aligned more
/// strictly than this are refused at compile time.
pub const ALIGN: usize = 16;
