//! The loom shim: every atomic that takes part in the wake and park protocol
//! comes from here, so that `RUSTFLAGS="--cfg loom"` swaps in loom's model
//! checked versions and the same code runs under the model checker.
//!
//! Loom's types cannot be built in a `const fn`; the [`maybe_const_fn!`] and
//! [`array!`] macros give a `const fn` normally and a plain `fn` under loom.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

#[cfg(all(feature = "std", loom))]
pub(crate) use loom::sync::{Condvar, Mutex};

#[cfg(all(feature = "std", not(loom)))]
pub(crate) use std::sync::{Condvar, Mutex};

/// `const fn` normally, plain `fn` under loom (loom's atomics are not const).
macro_rules! maybe_const_fn {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}

/// `[expr; N]` for a non-`Copy` expression, in both worlds.
#[cfg(not(loom))]
macro_rules! array {
    ($e:expr; $n:expr) => {
        [const { $e }; $n]
    };
}

#[cfg(loom)]
macro_rules! array {
    ($e:expr; $n:expr) => {
        core::array::from_fn(|_| $e)
    };
}

pub(crate) use {array, maybe_const_fn};
