//! The boot path: what the BSP does, once, from the PVH hand-off until the
//! scenario runs.
//!
//! [`pvh`] describes the hand-off block (pure data, tested on the host);
//! `bsp` is the BSP's global set-up, and `phys` its window on physical memory.

pub mod pvh;

#[cfg(target_os = "none")]
pub mod bsp;
#[cfg(target_os = "none")]
pub mod phys;
