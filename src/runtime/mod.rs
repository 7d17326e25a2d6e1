//! The sidecar CPU's side of the protocol: what a CPU does after boot.
//!
//! [`commands`] is the pure part (decoding and executing a command page),
//! tested on the host; the rest runs on the bare-metal kernel.

pub mod commands;
