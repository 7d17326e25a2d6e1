//! The sidecar CPU's side of the protocol: what a CPU does after boot.
//!
//! [`commands`] is the pure part (decoding and executing a command page),
//! tested on the host. The rest runs on the bare-metal kernel: `cpu` (the
//! CPU's pages, executor and request IPI), `dispatch` (the dispatch task),
//! `vp` (RUN_VP) and `plain` (the executor-less baseline loop).

pub mod commands;
#[cfg(test)]
mod fuzz;

#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod dispatch;
#[cfg(target_os = "none")]
pub mod plain;
#[cfg(target_os = "none")]
pub mod vp;
