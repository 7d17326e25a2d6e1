//! The sidecar CPU's side of the protocol: what a CPU does after boot.
//!
//! This room imports nothing of the main kernel, the VMM or the self-tests;
//! the main kernel reaches it only through the pages and IPIs of
//! [`crate::abi`], and self-tests only through `hooks`, the seam the BSP
//! picks at boot.
//!
//! [`commands`] is the pure part (decoding and executing a command page),
//! tested on the host; `hooks` is the seam. The rest runs on the
//! bare-metal kernel: `this_cpu` (the CPU's pages under one contract, and
//! the handshake), `enter` (the request IPI and the loop the CPU runs),
//! `dispatch` (the dispatch task), `run_vp` (RUN_VP on the shared VMRUN
//! loop), `plain` (the executor-less baseline loop) and `fault` (a contained
//! fault).

#[cfg(test)]
mod client_sequences;
pub mod commands;
#[cfg(test)]
mod fuzz;

#[cfg(target_os = "none")]
pub mod dispatch;
#[cfg(target_os = "none")]
pub mod enter;
#[cfg(target_os = "none")]
pub mod fault;
#[cfg(target_os = "none")]
pub mod hooks;
#[cfg(target_os = "none")]
pub mod plain;
#[cfg(target_os = "none")]
pub mod run_vp;
#[cfg(target_os = "none")]
pub mod this_cpu;
