//! Guest RAM as a kernel CPU reaches it: a mapping of the VM's memory that
//! guests on other CPUs write while this CPU reads it.
//!
//! So it is never a Rust slice or reference: [`GuestRam`] holds the
//! mapping's address and size, checks every access against the size, and
//! makes every access volatile, so a concurrent guest write is only ever a
//! value read at some moment, never undefined behaviour. The VMM (loading
//! programs, reading results and instructions), the command executor and
//! the page walker ([`GuestMemory`]) all go through it.

use core::sync::atomic::{AtomicU64, Ordering};

use super::GuestMemory;

/// The VM's guest RAM, mapped at a fixed address in the running CPU's page
/// tables (guest physical address 0 at `base`).
#[derive(Clone, Copy, Debug)]
pub struct GuestRam {
    base: *mut u8,
    size: u64,
}

// SAFETY: `GuestRam` is an address and a size; every access through it is a
// volatile access to memory shared with guests by design, which any CPU may
// make (the constructor's contract covers every CPU that maps it).
unsafe impl Send for GuestRam {}
// SAFETY: as for `Send`: no method makes a reference into the memory.
unsafe impl Sync for GuestRam {}

/// An access that falls outside guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// The first guest physical address of the access.
    pub gpa: u64,
    /// Its length in bytes.
    pub len: u64,
}

impl core::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} bytes at GPA {:#x} reach past guest RAM",
            self.len, self.gpa
        )
    }
}

impl GuestRam {
    /// Guest RAM of `size` bytes mapped at virtual address `base`.
    ///
    /// # Safety
    ///
    /// `base..base + size` maps the VM's guest RAM, readable and writable,
    /// in the page tables of every CPU that uses the value, for as long as
    /// any copy of it is used; and no Rust reference to that memory exists
    /// (guests write it concurrently, so it is only ever reached through
    /// volatile accesses).
    pub const unsafe fn new(base: u64, size: u64) -> Self {
        Self {
            base: base as *mut u8,
            size,
        }
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The address of `len` bytes at `gpa`, if they are all guest RAM.
    fn pointer(&self, gpa: u64, len: u64) -> Result<*mut u8, OutOfRange> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(self.base.wrapping_add(gpa as usize)),
            _ => Err(OutOfRange { gpa, len }),
        }
    }

    /// Copies guest RAM at `gpa` into `buffer`.
    pub fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
        let start = self.pointer(gpa, buffer.len() as u64)?;
        for (offset, byte) in buffer.iter_mut().enumerate() {
            // SAFETY: `pointer` checked that the whole range is inside the
            // mapping `new`'s caller vouched for; a volatile byte read
            // tolerates a guest writing the byte meanwhile.
            *byte = unsafe { start.add(offset).read_volatile() };
        }
        Ok(())
    }

    /// `N` bytes of guest RAM at `gpa`.
    pub fn read_array<const N: usize>(&self, gpa: u64) -> Result<[u8; N], OutOfRange> {
        let mut bytes = [0; N];
        self.read(gpa, &mut bytes)?;
        Ok(bytes)
    }

    /// Copies `bytes` into guest RAM at `gpa`.
    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        let start = self.pointer(gpa, bytes.len() as u64)?;
        for (offset, byte) in bytes.iter().enumerate() {
            // SAFETY: as in `read`; writing guest RAM is this call's purpose,
            // and a guest racing with it sees either value of the byte.
            unsafe { start.add(offset).write_volatile(*byte) };
        }
        Ok(())
    }

    /// The little-endian 32-bit words of `len` bytes at `gpa`.
    pub fn read_u32s(self, gpa: u64, len: u64) -> Result<impl Iterator<Item = u32>, OutOfRange> {
        self.pointer(gpa, len)?;
        Ok((0..len / 4).map(move |i| {
            // In range: the whole span was checked above.
            let word = self.read_array::<4>(gpa + i * 4).unwrap_or_default();
            u32::from_le_bytes(word)
        }))
    }

    fn aligned_u64(&self, gpa: u64) -> Option<*mut u64> {
        if !gpa.is_multiple_of(8) || !(self.base as u64).is_multiple_of(8) {
            return None;
        }
        self.pointer(gpa, 8).ok().map(|p| p.cast::<u64>())
    }
}

impl GuestMemory for GuestRam {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let pointer = self.aligned_u64(gpa)?;
        // SAFETY: `aligned_u64` checked bounds and 8-byte alignment inside
        // the mapping `new`'s caller vouched for; one volatile access reads
        // a page-table entry as the guest's MMU would, whole.
        Some(unsafe { pointer.read_volatile() })
    }

    fn set_bits_if_unchanged(&mut self, gpa: u64, seen: u64, bits: u64) -> Option<bool> {
        let pointer = self.aligned_u64(gpa)?;
        // SAFETY: as in `read_u64` (in bounds, 8-aligned, in the mapping);
        // guest RAM is only ever accessed by the kernel with volatile or
        // atomic operations, and by guests, whose writes to the entry a
        // locked compare-exchange cannot lose. Setting accessed and dirty
        // bits is what the command asked for.
        let entry = unsafe { AtomicU64::from_ptr(pointer) };
        Some(
            entry
                .compare_exchange(seen, seen | bits, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn ram(backing: &mut [u64]) -> GuestRam {
        // SAFETY: the backing buffer outlives the value in each test, and
        // the tests make no reference to it while the value is used.
        unsafe { GuestRam::new(backing.as_mut_ptr() as u64, (backing.len() * 8) as u64) }
    }

    #[test]
    fn reads_and_writes_inside_and_refuses_outside() {
        let mut backing = vec![0u64; 512];
        let mut ram = ram(&mut backing);
        ram.write(0x10, &[1, 2, 3, 4]).unwrap();
        assert_eq!(ram.read_array::<4>(0x10).unwrap(), [1, 2, 3, 4]);
        assert_eq!(ram.read_u64(0x10), Some(0x0403_0201));
        assert_eq!(ram.set_bits_if_unchanged(0xFF8, 0, 5), Some(true));
        assert_eq!(ram.set_bits_if_unchanged(0xFF8, 5, 0x60), Some(true));
        assert_eq!(ram.read_u64(0xFF8), Some(0x65), "bits are ORed in");
        assert_eq!(
            ram.set_bits_if_unchanged(0xFF8, 5, 0x100),
            Some(false),
            "not into an entry that changed"
        );
        assert_eq!(ram.read_u64(0xFF8), Some(0x65));
        assert_eq!(ram.set_bits_if_unchanged(0x1000, 0, 1), None);
        assert_eq!(
            ram.write(0xFFE, &[0; 4]),
            Err(OutOfRange { gpa: 0xFFE, len: 4 })
        );
        assert_eq!(
            ram.read_array::<1>(u64::MAX).err().map(|e| e.gpa),
            Some(u64::MAX)
        );
        assert_eq!(ram.read_u64(0x1000), None);
        assert_eq!(ram.read_u64(0x11), None, "unaligned entries are refused");
        let words: vec::Vec<u32> = ram.read_u32s(0x10, 8).unwrap().collect();
        assert_eq!(words, [0x0403_0201, 0]);
        assert!(ram.read_u32s(0xFFC, 8).is_err());
    }
}
