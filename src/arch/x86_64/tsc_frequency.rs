//! Where the TSC's frequency comes from: which CPUID leaf states it, which
//! values are believable, and the arithmetic of a calibration against the
//! PIT when no leaf does. Pure logic, tested on the host; `time` reads the
//! leaves and the PIT.
//!
//! The leaves, best first:
//! - `0x4000_0010` (the hypervisor's timing leaf, QEMU under KVM with
//!   `invtsc`): EAX the TSC in kHz, EBX the local APIC timer in kHz. Used
//!   only when CPUID.1:ECX bit 31 says a hypervisor is present and its leaf
//!   `0x4000_0000` lists `0x4000_0010`.
//! - `0x15` (Intel): TSC = crystal Hz (ECX) × EBX / EAX, when all three are
//!   given.
//! - `0x16` (Intel): EAX the base frequency in MHz, which on the CPUs that
//!   have the leaf is the TSC's.
//!
//! A leaf above the CPU's maximum (CPUID.0:EAX) reads as the maximum leaf's
//! data on Intel, so a leaf counts only when the maximum covers it. QEMU 7.2
//! offers none of them with `-cpu max` under TCG (maximum basic leaf 0xD,
//! hypervisor leaves up to `0x4000_0001`), nor with `-cpu qemu64` under KVM;
//! with `-cpu qemu64,+invtsc` under KVM it offers `0x4000_0010`.

/// Where the TSC frequency came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TscSource {
    /// CPUID leaf `0x4000_0010`, the hypervisor's.
    HypervisorLeaf,
    /// CPUID leaf `0x15`, the crystal clock and its ratio.
    CrystalRatio,
    /// CPUID leaf `0x16`, the base frequency.
    BaseFrequency,
    /// Measured against the PIT.
    Pit,
}

impl TscSource {
    /// The name the log and the report (`boot.tsc_source`) use.
    pub const fn name(self) -> &'static str {
        match self {
            TscSource::HypervisorLeaf => "cpuid-0x40000010",
            TscSource::CrystalRatio => "cpuid-0x15",
            TscSource::BaseFrequency => "cpuid-0x16",
            TscSource::Pit => "pit",
        }
    }
}

/// The CPUID values the choice looks at, as the CPU returned them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidTiming {
    /// CPUID.0:EAX, the highest basic leaf.
    pub max_basic_leaf: u32,
    /// CPUID.1:ECX bit 31: running under a hypervisor.
    pub hypervisor: bool,
    /// CPUID.0x4000_0000:EAX, the highest hypervisor leaf (0 when absent).
    pub max_hypervisor_leaf: u32,
    /// CPUID.0x15: EAX (denominator), EBX (numerator), ECX (crystal Hz).
    pub leaf_15: [u32; 3],
    /// CPUID.0x16:EAX, the base frequency in MHz (bits 15..0).
    pub leaf_16_eax: u32,
    /// CPUID.0x4000_0010: EAX (TSC kHz), EBX (APIC timer kHz).
    pub leaf_4000_0010: [u32; 2],
}

/// Frequencies a CPUID leaf states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatedFrequencies {
    /// Which leaf.
    pub source: TscSource,
    /// The TSC, in Hz.
    pub tsc_hz: u64,
    /// The local APIC timer's input clock in Hz, when the leaf states it.
    pub apic_timer_hz: Option<u64>,
}

/// The slowest and fastest TSC believed: anything outside is a leaf that
/// means something else.
pub const PLAUSIBLE_TSC_HZ: core::ops::RangeInclusive<u64> = 100_000_000..=10_000_000_000;

/// The slowest and fastest APIC timer clock believed.
pub const PLAUSIBLE_APIC_TIMER_HZ: core::ops::RangeInclusive<u64> = 1_000_000..=10_000_000_000;

/// The first leaf, best first, that states a plausible TSC frequency.
pub fn stated_frequencies(cpuid: &CpuidTiming) -> Option<StatedFrequencies> {
    hypervisor_leaf(cpuid)
        .or_else(|| crystal_ratio(cpuid))
        .or_else(|| base_frequency(cpuid))
        .filter(|f| PLAUSIBLE_TSC_HZ.contains(&f.tsc_hz))
}

fn hypervisor_leaf(cpuid: &CpuidTiming) -> Option<StatedFrequencies> {
    if !cpuid.hypervisor || cpuid.max_hypervisor_leaf < 0x4000_0010 {
        return None;
    }
    let [tsc_khz, apic_khz] = cpuid.leaf_4000_0010;
    let tsc_hz = u64::from(tsc_khz) * 1000;
    let apic_hz = u64::from(apic_khz) * 1000;
    PLAUSIBLE_TSC_HZ
        .contains(&tsc_hz)
        .then_some(StatedFrequencies {
            source: TscSource::HypervisorLeaf,
            tsc_hz,
            apic_timer_hz: PLAUSIBLE_APIC_TIMER_HZ
                .contains(&apic_hz)
                .then_some(apic_hz),
        })
}

fn crystal_ratio(cpuid: &CpuidTiming) -> Option<StatedFrequencies> {
    let [denominator, numerator, crystal_hz] = cpuid.leaf_15;
    if cpuid.max_basic_leaf < 0x15 || denominator == 0 || numerator == 0 || crystal_hz == 0 {
        return None;
    }
    let tsc_hz = u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator);
    PLAUSIBLE_TSC_HZ
        .contains(&tsc_hz)
        .then_some(StatedFrequencies {
            source: TscSource::CrystalRatio,
            tsc_hz,
            // The crystal drives the APIC timer on the CPUs with this leaf,
            // but not on all of them: measure it instead.
            apic_timer_hz: None,
        })
}

fn base_frequency(cpuid: &CpuidTiming) -> Option<StatedFrequencies> {
    let mhz = cpuid.leaf_16_eax & 0xFFFF;
    if cpuid.max_basic_leaf < 0x16 || mhz == 0 {
        return None;
    }
    let tsc_hz = u64::from(mhz) * 1_000_000;
    PLAUSIBLE_TSC_HZ
        .contains(&tsc_hz)
        .then_some(StatedFrequencies {
            source: TscSource::BaseFrequency,
            tsc_hz,
            apic_timer_hz: None,
        })
}

/// The PIT's input clock.
pub const PIT_HZ: u64 = 1_193_182;

/// PIT ticks a calibration needs at least (1 ms: one tick is 0.08 % of it).
pub const MIN_PIT_TICKS: u16 = (PIT_HZ / 1000) as u16;

/// PIT ticks from `start` to `now`, two readings of channel 2 counting down
/// from 65536. The caller checks that it did not pass zero in between (its
/// output rises then).
pub const fn pit_ticks(start: u16, now: u16) -> u16 {
    start.wrapping_sub(now)
}

/// A frequency from `ticks` counted while a reference clock of
/// `reference_hz` counted `reference_ticks`.
pub fn frequency(ticks: u64, reference_ticks: u64, reference_hz: u64) -> u64 {
    if reference_ticks == 0 {
        return 0;
    }
    (u128::from(ticks) * u128::from(reference_hz) / u128::from(reference_ticks)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What QEMU 7.2 reported here, with `-cpu max` under TCG: maximum
    /// leaf 0xD, so leaves 0x15 and 0x16 read as leaf 0xD's data, and
    /// hypervisor leaves up to 0x4000_0001 (0x4000_0010 reads as garbage).
    fn qemu_tcg_max() -> CpuidTiming {
        CpuidTiming {
            max_basic_leaf: 0xD,
            hypervisor: true,
            max_hypervisor_leaf: 0x4000_0001,
            leaf_15: [0x21F, 0x240, 0xA88],
            leaf_16_eax: 0x21F,
            leaf_4000_0010: [0x21F, 0x240],
        }
    }

    #[test]
    fn leaves_above_the_maximum_are_ignored() {
        assert_eq!(stated_frequencies(&qemu_tcg_max()), None);
    }

    #[test]
    fn the_hypervisor_leaf_comes_first() {
        let cpuid = CpuidTiming {
            max_basic_leaf: 0x16,
            max_hypervisor_leaf: 0x4000_0010,
            leaf_15: [2, 184, 24_000_000],
            leaf_16_eax: 2200,
            leaf_4000_0010: [2_302_721, 1_000_000],
            ..qemu_tcg_max()
        };
        assert_eq!(
            stated_frequencies(&cpuid),
            Some(StatedFrequencies {
                source: TscSource::HypervisorLeaf,
                tsc_hz: 2_302_721_000,
                apic_timer_hz: Some(1_000_000_000),
            })
        );
        // Without the hypervisor bit the leaf is not the hypervisor's.
        let bare = CpuidTiming {
            hypervisor: false,
            ..cpuid
        };
        let stated = stated_frequencies(&bare).unwrap();
        assert_eq!(stated.source, TscSource::CrystalRatio);
        assert_eq!(stated.tsc_hz, 2_208_000_000);
        assert_eq!(stated.apic_timer_hz, None);
    }

    #[test]
    fn crystal_ratio_needs_all_three_values() {
        let cpuid = CpuidTiming {
            max_basic_leaf: 0x16,
            leaf_15: [2, 184, 0],
            leaf_16_eax: 0x0898, // 2200 MHz
            ..CpuidTiming::default()
        };
        let stated = stated_frequencies(&cpuid).unwrap();
        assert_eq!(
            (stated.source, stated.tsc_hz),
            (TscSource::BaseFrequency, 2_200_000_000)
        );
        let only_15 = CpuidTiming {
            max_basic_leaf: 0x15,
            ..cpuid
        };
        assert_eq!(stated_frequencies(&only_15), None);
    }

    #[test]
    fn implausible_values_are_refused() {
        // A hypervisor leaf of 50 MHz: fall through to the next leaf.
        let cpuid = CpuidTiming {
            max_basic_leaf: 0x16,
            hypervisor: true,
            max_hypervisor_leaf: 0x4000_0010,
            leaf_16_eax: 3000,
            leaf_4000_0010: [50_000, 1_000_000],
            ..CpuidTiming::default()
        };
        let stated = stated_frequencies(&cpuid).unwrap();
        assert_eq!(
            (stated.source, stated.tsc_hz),
            (TscSource::BaseFrequency, 3_000_000_000)
        );
        // 20 GHz from the crystal ratio, nothing else: no stated frequency.
        let fast = CpuidTiming {
            max_basic_leaf: 0x15,
            leaf_15: [1, 1000, 20_000_000],
            ..CpuidTiming::default()
        };
        assert_eq!(stated_frequencies(&fast), None);
        // An APIC timer of 0 kHz is not stated.
        let no_apic = CpuidTiming {
            leaf_4000_0010: [2_000_000, 0],
            ..cpuid
        };
        assert_eq!(stated_frequencies(&no_apic).unwrap().apic_timer_hz, None);
    }

    #[test]
    fn pit_arithmetic() {
        assert_eq!(pit_ticks(0, 65_000), 536);
        assert_eq!(pit_ticks(40_000, 38_807), 1193);
        // 2.3 million TSC ticks while the PIT counted 1193: 2.3 GHz.
        let hz = frequency(2_300_000, 1193, PIT_HZ);
        assert!((2_299_000_000..2_301_000_000).contains(&hz), "{hz}");
        assert_eq!(frequency(5, 0, PIT_HZ), 0);
        assert_eq!(MIN_PIT_TICKS, 1193);
    }
}
