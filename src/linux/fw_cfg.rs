//! QEMU's firmware configuration device (fw_cfg, QEMU's
//! `docs/specs/fw_cfg.rst`): finding a file by name (`-fw_cfg
//! name=opt/...,file=...`) and copying it into physical memory with the
//! DMA interface. Used by the BSP only, before Linux runs; afterwards the
//! device is Linux's.

use core::sync::atomic::{compiler_fence, Ordering};

use x86_64::instructions::port::Port;

/// Selector register (16-bit write).
const SELECTOR_PORT: u16 = 0x510;
/// Data register (byte reads).
const DATA_PORT: u16 = 0x511;
/// DMA address register: high 32 bits here, low 32 bits (which start the
/// transfer) at `+ 4`, both big-endian.
const DMA_PORT: u16 = 0x514;

const SELECT_SIGNATURE: u16 = 0x0000;
const SELECT_FEATURES: u16 = 0x0001;
const SELECT_FILE_DIR: u16 = 0x0019;
const FEATURE_DMA: u32 = 1 << 1;

const DMA_ERROR: u32 = 1 << 0;
const DMA_READ: u32 = 1 << 1;
const DMA_SKIP: u32 = 1 << 2;
const DMA_SELECT: u32 = 1 << 3;

/// A file in the fw_cfg directory.
#[derive(Clone, Copy, Debug)]
pub struct FwCfgFile {
    /// The selector that reads it.
    pub select: u16,
    /// Its size in bytes.
    pub size: u32,
}

/// Why fw_cfg could not be used.
#[derive(Clone, Copy, Debug)]
pub enum FwCfgError {
    /// No "QEMU" signature.
    Absent,
    /// The device has no DMA interface.
    NoDma,
    /// The device flagged a DMA transfer as failed.
    DmaFailed,
}

impl core::fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FwCfgError::Absent => "QEMU's fw_cfg device is absent",
            FwCfgError::NoDma => "QEMU's fw_cfg device has no DMA interface",
            FwCfgError::DmaFailed => "a fw_cfg DMA transfer failed",
        })
    }
}

fn select(key: u16) {
    // SAFETY: writing the fw_cfg selector only picks the item later reads
    // return; the BSP is the only user of the device before Linux.
    unsafe { Port::<u16>::new(SELECTOR_PORT).write(key) };
}

fn read_bytes(out: &mut [u8]) {
    let mut data = Port::<u8>::new(DATA_PORT);
    for byte in out {
        // SAFETY: reading the data register returns the selected item's
        // next byte and touches no memory.
        *byte = unsafe { data.read() };
    }
}

/// Checks the signature and the DMA feature.
pub fn probe() -> Result<(), FwCfgError> {
    let mut signature = [0u8; 4];
    select(SELECT_SIGNATURE);
    read_bytes(&mut signature);
    if &signature != b"QEMU" {
        return Err(FwCfgError::Absent);
    }
    let mut features = [0u8; 4];
    select(SELECT_FEATURES);
    read_bytes(&mut features);
    match u32::from_le_bytes(features) & FEATURE_DMA {
        0 => Err(FwCfgError::NoDma),
        _ => Ok(()),
    }
}

/// Looks `name` up in the file directory.
pub fn find(name: &str) -> Option<FwCfgFile> {
    select(SELECT_FILE_DIR);
    let mut count = [0u8; 4];
    read_bytes(&mut count);
    for _ in 0..u32::from_be_bytes(count) {
        // size (be32), select (be16), reserved (u16), name (56 bytes, NUL padded)
        let mut entry = [0u8; 64];
        read_bytes(&mut entry);
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let file_select = u16::from_be_bytes([entry[4], entry[5]]);
        let raw_name = &entry[8..];
        let len = raw_name.iter().position(|&b| b == 0).unwrap_or(56);
        if &raw_name[..len] == name.as_bytes() {
            return Some(FwCfgFile {
                select: file_select,
                size,
            });
        }
    }
    None
}

/// The DMA descriptor the device reads (all fields big-endian).
#[repr(C, align(16))]
struct DmaAccess {
    control: u32,
    length: u32,
    address: u64,
}

/// Runs one DMA operation: `control` (with the selector in its top half
/// when it selects), `length` bytes to or from physical address `address`.
///
/// # Safety
///
/// For a read, `address..address + length` must be identity-mapped RAM that
/// nothing else uses.
unsafe fn dma(control: u32, length: u32, address: u64) -> Result<(), FwCfgError> {
    let mut access = DmaAccess {
        control: control.to_be(),
        length: length.to_be(),
        address: address.to_be(),
    };
    let descriptor = &raw mut access;
    let physical = descriptor as u64; // the BSP's stack is identity-mapped
    compiler_fence(Ordering::SeqCst);
    // SAFETY: the descriptor is valid until the device clears its control
    // word (polled below); the caller vouches for the target memory.
    unsafe {
        Port::<u32>::new(DMA_PORT).write(((physical >> 32) as u32).to_be());
        Port::<u32>::new(DMA_PORT + 4).write((physical as u32).to_be());
    }
    loop {
        // SAFETY: the device writes the control word; read it volatile.
        let status = u32::from_be(unsafe { (&raw const (*descriptor).control).read_volatile() });
        if status & DMA_ERROR != 0 {
            return Err(FwCfgError::DmaFailed);
        }
        if status == 0 {
            compiler_fence(Ordering::SeqCst);
            return Ok(());
        }
        core::hint::spin_loop();
    }
}

/// Selects `file` and copies its bytes `from..from + length` to physical
/// address `to`.
///
/// # Safety
///
/// `to..to + length` must be identity-mapped RAM that nothing else uses.
pub unsafe fn read(file: FwCfgFile, from: u32, length: u32, to: u64) -> Result<(), FwCfgError> {
    let selected = u32::from(file.select) << 16 | DMA_SELECT;
    // SAFETY: a skip writes no memory; the caller vouches for `to`.
    unsafe {
        dma(selected | DMA_SKIP, from, 0)?;
        dma(DMA_READ, length, to)
    }
}
