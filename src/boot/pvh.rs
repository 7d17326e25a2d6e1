//! The PVH boot protocol's start-of-day block (`hvm_start_info`), which QEMU
//! hands the kernel's 32-bit entry point in `EBX`.

/// `hvm_start_info.magic`.
pub const START_INFO_MAGIC: u32 = 0x336E_C578;

/// The start info block, version 0 and 1 fields (Xen's `hvm_start_info`).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct StartInfo {
    /// Always [`START_INFO_MAGIC`].
    pub magic: u32,
    /// 0, or 1 when the memory map fields are present.
    pub version: u32,
    /// Flags (unused by sidecar).
    pub flags: u32,
    /// Number of boot modules.
    pub nr_modules: u32,
    /// Physical address of the module list.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line (`-append`).
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, or 0.
    pub rsdp_paddr: u64,
    /// Physical address of the memory map (version 1).
    pub memmap_paddr: u64,
    /// Number of memory map entries (version 1).
    pub memmap_entries: u32,
    /// Reserved.
    pub reserved: u32,
}

/// One entry of the PVH memory map (the e820 map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct MemmapEntry {
    /// First byte of the range.
    pub addr: u64,
    /// Length of the range in bytes.
    pub size: u64,
    /// e820 type: 1 is usable RAM.
    pub kind: u32,
    /// Reserved.
    pub reserved: u32,
}

/// [`MemmapEntry::kind`] of usable RAM.
pub const MEMMAP_RAM: u32 = 1;

const _: () = assert!(core::mem::size_of::<StartInfo>() == 56);
const _: () = assert!(core::mem::offset_of!(StartInfo, cmdline_paddr) == 24);
const _: () = assert!(core::mem::offset_of!(StartInfo, rsdp_paddr) == 32);
const _: () = assert!(core::mem::size_of::<MemmapEntry>() == 24);

/// The command line bytes up to the NUL (or `max_len`), as UTF-8 text.
pub fn cmdline_text(bytes: &[u8]) -> Result<&str, core::str::Utf8Error> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_stops_at_nul() {
        assert_eq!(cmdline_text(b"scenario=boot\0junk"), Ok("scenario=boot"));
        assert_eq!(cmdline_text(b"no terminator"), Ok("no terminator"));
        assert!(cmdline_text(b"\xff\0").is_err());
    }
}
