//! The guest memory the demo's programs need, and the answers they must
//! give: what both VMMs load before a run and check after it.

use core::fmt;

use super::devices::{mmio_value, Reports};
use super::VpEnd;
use crate::guests::{self, checksum_region};
use crate::vp::{GuestRam, OutOfRange};

/// The words VP `vp`'s checksum region is filled with: a xorshift stream
/// seeded by the VP, so each VP sums data only it was given.
fn region_words(vp: u32, len: u64) -> impl Iterator<Item = u32> {
    let mut x = 0x9E37_79B9u32 ^ vp.wrapping_mul(0x85EB_CA6B);
    (0..len / 4).map(move |_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    })
}

/// Loads the guest programs, zeroes the guests' IDT and their interrupt
/// counters, and fills each VP's checksum region with its own data.
pub fn prepare_memory(memory: &GuestRam, vps: impl Iterator<Item = u32>) -> Result<(), OutOfRange> {
    memory.write(guests::CODE_GPA, guests::image())?;
    memory.write(guests::IDT_GPA, &[0; 0x800])?;
    memory.write(guests::IRQ_COUNTS_GPA, &[0; 0x1000])?;
    for vp in vps {
        let (gpa, len) = checksum_region(vp);
        for (gpa, word) in (gpa..).step_by(4).zip(region_words(vp, len)) {
            memory.write(gpa, &word.to_le_bytes())?;
        }
    }
    Ok(())
}

/// The checksum VP `vp`'s guest must report, from its region as it is in
/// `memory` now.
pub fn expected_checksum(memory: &GuestRam, vp: u32) -> Result<u32, OutOfRange> {
    let (gpa, len) = checksum_region(vp);
    Ok(guests::expected_checksum(memory.read_u32s(gpa, len)?))
}

/// How a checksum program's run was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrongAnswer {
    /// The run did not end at the exit port.
    Ended(VpEnd),
    /// The sum the guest reported (`None`: it reported none).
    Checksum {
        /// What it reported.
        reported: Option<u32>,
        /// What the VMM computed over the same region.
        expected: u32,
    },
    /// The interrupt count the guest reported, not exactly one.
    Interrupts(Option<u32>),
    /// The value the guest read from the MMIO device, not its register's.
    Mmio(Option<u32>),
}

impl fmt::Display for WrongAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WrongAnswer::Ended(end) => write!(f, "the checksum program ended with {end:?}"),
            WrongAnswer::Checksum { reported, expected } => {
                write!(f, "checksum {reported:?}, expected {expected:#x}")
            }
            WrongAnswer::Interrupts(irqs) => write!(f, "took {irqs:?} interrupts"),
            WrongAnswer::Mmio(value) => write!(f, "read {value:?} from the MMIO device"),
        }
    }
}

/// Checks a [`guests::Program::Checksum`] run of VP `vp`: it exited,
/// reported `expected` as its sum, took exactly the one interrupt the VMM
/// injected, and read its MMIO register.
pub fn check_checksum(
    vp: u32,
    end: VpEnd,
    reports: &Reports,
    expected: u32,
) -> Result<(), WrongAnswer> {
    if end != VpEnd::Exited {
        return Err(WrongAnswer::Ended(end));
    }
    if reports.result != Some(expected) {
        return Err(WrongAnswer::Checksum {
            reported: reports.result,
            expected,
        });
    }
    if reports.irqs != Some(1) {
        return Err(WrongAnswer::Interrupts(reports.irqs));
    }
    if reports.mmio != Some(mmio_value(vp)) {
        return Err(WrongAnswer::Mmio(reports.mmio));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

    use super::*;

    fn good(vp: u32) -> Reports {
        Reports {
            result: Some(0x1234),
            irqs: Some(1),
            mmio: Some(mmio_value(vp)),
            exited: true,
        }
    }

    #[test]
    fn a_good_run_passes_and_each_wrong_part_is_named() {
        assert_eq!(check_checksum(4, VpEnd::Exited, &good(4), 0x1234), Ok(()));
        assert_eq!(
            check_checksum(4, VpEnd::Stopped, &good(4), 0x1234),
            Err(WrongAnswer::Ended(VpEnd::Stopped))
        );
        assert_eq!(
            check_checksum(4, VpEnd::Exited, &good(4), 0x1235),
            Err(WrongAnswer::Checksum {
                reported: Some(0x1234),
                expected: 0x1235
            })
        );
        let twice = Reports {
            irqs: Some(2),
            ..good(4)
        };
        assert_eq!(
            check_checksum(4, VpEnd::Exited, &twice, 0x1234),
            Err(WrongAnswer::Interrupts(Some(2)))
        );
        // VP 5's MMIO register is not VP 4's.
        assert_eq!(
            check_checksum(5, VpEnd::Exited, &good(4), 0x1234),
            Err(WrongAnswer::Mmio(Some(mmio_value(4))))
        );
    }

    #[test]
    fn prepared_memory_holds_the_programs_and_each_vps_own_data() {
        let mut buffer = vec![0xFFu8; 2 << 20];
        // SAFETY: the buffer outlives `memory`, and is only reached through
        // it while `memory` is used.
        let memory = unsafe { GuestRam::new(buffer.as_mut_ptr() as u64, buffer.len() as u64) };
        prepare_memory(&memory, [0, 1].into_iter()).unwrap();
        let image = guests::image();
        let mut loaded = vec![0; image.len()];
        memory.read(guests::CODE_GPA, &mut loaded).unwrap();
        assert_eq!(loaded, image);
        assert_eq!(memory.read_array::<4>(guests::IRQ_COUNTS_GPA), Ok([0; 4]));
        let sums = [0, 1].map(|vp| expected_checksum(&memory, vp).unwrap());
        assert_ne!(sums[0], sums[1]);
        let (gpa, len) = checksum_region(0);
        let words: vec::Vec<u32> = memory.read_u32s(gpa, len).unwrap().collect();
        assert_eq!(words, region_words(0, len).collect::<vec::Vec<_>>());
        // A region past the memory is an error, not a panic.
        assert!(expected_checksum(&memory, 4096).is_err());
    }
}
