//! The boot path: what the BSP does, once, from the PVH hand-off until the
//! scenario runs.
//!
//! Pure parts, tested on the host: [`pvh`] (the hand-off block), [`memory`]
//! (finding RAM for the nodes) and [`page_tables`] (what every CPU maps).
//! Bare-metal parts: `bsp` (the BSP's path from entry to scenario, or to
//! [`crate::linux`] with `main=linux`),
//! `prepare` (its one-time preparation of the sidecar CPUs), `cpu_setup`
//! (building one CPU's pages, by whichever CPU starts it), `fanout`
//! (INIT-SIPI-SIPI and the fan-out, run by the BSP and the APs), `ap` (an
//! AP's first steps), `summary` (the boot report) and `phys` (reading
//! physical memory). What the BSP decides is published in [`crate::plan`].

pub mod memory;
pub mod page_tables;
pub mod pvh;

#[cfg(target_os = "none")]
pub mod ap;
#[cfg(target_os = "none")]
pub mod bsp;
#[cfg(target_os = "none")]
pub mod cpu_setup;
#[cfg(target_os = "none")]
pub mod fanout;
#[cfg(target_os = "none")]
pub mod phys;
#[cfg(target_os = "none")]
pub mod prepare;
#[cfg(target_os = "none")]
pub mod summary;
