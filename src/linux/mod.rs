//! `--main linux`: after the fan-out, the BSP loads a Linux bzImage and an
//! initramfs that QEMU hands in through fw_cfg and enters Linux through the
//! x86 64-bit boot protocol, beside the idle sidecar CPUs (`docs/linux.md`).
//!
//! Pure, tested on the host: [`boot_params`] (the setup header, where the
//! kernel goes, the E820 map with sidecar's pages reserved, the zero page
//! and the command line with the sidecar record). Bare metal: `fw_cfg`
//! (QEMU's firmware configuration device, read by DMA) and `handoff` (the
//! BSP's last steps: load, fill, jump). Only `boot/bsp.rs` calls it; it
//! reads the machine plan and touches no sidecar CPU.

pub mod boot_params;

#[cfg(target_os = "none")]
pub mod fw_cfg;
#[cfg(target_os = "none")]
pub mod handoff;
