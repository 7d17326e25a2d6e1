//! Reading and writing a VP's registers by their Hyper-V names, the way
//! GET/SET_VP_REGISTERS name them.

use core::fmt;

use crate::abi::{CpuContextX64, HvRegisterValue, HvX64RegisterName as Name};

use super::VpState;

/// Why a register could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The name is not one sidecar knows.
    UnknownName(Name),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::UnknownName(name) => {
                write!(f, "unknown register name {:#x}", name.0)
            }
        }
    }
}

/// A VP whose registers can be read and written by name.
pub trait VpRegisters {
    /// Reads register `name`.
    fn get(&self, name: Name) -> Result<HvRegisterValue, RegisterError>;
    /// Writes register `name`.
    fn set(&mut self, name: Name, value: HvRegisterValue) -> Result<(), RegisterError>;
}

/// A VP held in memory: its `cpu_context` and its [`VpState`].
pub struct SoftVp<'a> {
    /// General registers (with CR2 in RSP's slot) and the FXSAVE image.
    pub context: &'a mut CpuContextX64,
    /// Everything else.
    pub state: &'a mut VpState,
}

fn gp_index(name: Name) -> Option<usize> {
    Some(match name {
        Name::Rax => CpuContextX64::RAX,
        Name::Rcx => CpuContextX64::RCX,
        Name::Rdx => CpuContextX64::RDX,
        Name::Rbx => CpuContextX64::RBX,
        Name::Cr2 => CpuContextX64::CR2,
        Name::Rbp => CpuContextX64::RBP,
        Name::Rsi => CpuContextX64::RSI,
        Name::Rdi => CpuContextX64::RDI,
        _ if (Name::R8.0..=Name::R15.0).contains(&name.0) => {
            CpuContextX64::R8 + (name.0 - Name::R8.0) as usize
        }
        _ => return None,
    })
}

fn state_field(name: Name) -> Option<fn(&mut VpState) -> &mut u64> {
    Some(match name {
        Name::Rip => |s| &mut s.rip,
        Name::Rflags => |s| &mut s.rflags,
        Name::Rsp => |s| &mut s.rsp,
        Name::Cr0 => |s| &mut s.cr0,
        Name::Cr3 => |s| &mut s.cr3,
        Name::Cr4 => |s| &mut s.cr4,
        Name::Cr8 => |s| &mut s.cr8,
        Name::Xfem => |s| &mut s.xfem,
        Name::Dr7 => |s| &mut s.dr7,
        Name::Efer => |s| &mut s.efer,
        Name::Pat => |s| &mut s.pat,
        Name::KernelGsBase => |s| &mut s.kernel_gs_base,
        Name::SysenterCs => |s| &mut s.sysenter_cs,
        Name::SysenterEip => |s| &mut s.sysenter_eip,
        Name::SysenterEsp => |s| &mut s.sysenter_esp,
        Name::Star => |s| &mut s.star,
        Name::Lstar => |s| &mut s.lstar,
        Name::Cstar => |s| &mut s.cstar,
        Name::Sfmask => |s| &mut s.sfmask,
        Name::PendingInterruption => |s| &mut s.pending_interruption,
        Name::InterruptState => |s| &mut s.interrupt_state,
        _ => return None,
    })
}

/// Segment and table registers are stored as their `HvX64*Register` structs,
/// which are 16 bytes each; they are read and written through their u128
/// encodings.
fn wide_get(state: &VpState, name: Name) -> Option<u128> {
    Some(match name {
        Name::Es => state.es.to_u128(),
        Name::Cs => state.cs.to_u128(),
        Name::Ss => state.ss.to_u128(),
        Name::Ds => state.ds.to_u128(),
        Name::Fs => state.fs.to_u128(),
        Name::Gs => state.gs.to_u128(),
        Name::Ldtr => state.ldtr.to_u128(),
        Name::Tr => state.tr.to_u128(),
        Name::Idtr => state.idtr.to_u128(),
        Name::Gdtr => state.gdtr.to_u128(),
        Name::PendingEvent0 => state.pending_event0,
        _ => return None,
    })
}

fn wide_set(state: &mut VpState, name: Name, value: u128) -> Option<()> {
    use crate::abi::{HvX64SegmentRegister as Segment, HvX64TableRegister as Table};
    match name {
        Name::Es => state.es = Segment::from_u128(value),
        Name::Cs => state.cs = Segment::from_u128(value),
        Name::Ss => state.ss = Segment::from_u128(value),
        Name::Ds => state.ds = Segment::from_u128(value),
        Name::Fs => state.fs = Segment::from_u128(value),
        Name::Gs => state.gs = Segment::from_u128(value),
        Name::Ldtr => state.ldtr = Segment::from_u128(value),
        Name::Tr => state.tr = Segment::from_u128(value),
        Name::Idtr => state.idtr = Table::from_u128(value),
        Name::Gdtr => state.gdtr = Table::from_u128(value),
        Name::PendingEvent0 => state.pending_event0 = value,
        _ => return None,
    }
    Some(())
}

impl VpRegisters for SoftVp<'_> {
    fn get(&self, name: Name) -> Result<HvRegisterValue, RegisterError> {
        if let Some(index) = gp_index(name) {
            return Ok(self.context.gps[index].into());
        }
        if let Some(field) = state_field(name) {
            let mut copy = *self.state;
            return Ok((*field(&mut copy)).into());
        }
        wide_get(self.state, name)
            .map(HvRegisterValue)
            .ok_or(RegisterError::UnknownName(name))
    }

    fn set(&mut self, name: Name, value: HvRegisterValue) -> Result<(), RegisterError> {
        if let Some(index) = gp_index(name) {
            self.context.gps[index] = value.as_u64();
            return Ok(());
        }
        if let Some(field) = state_field(name) {
            *field(self.state) = value.as_u64();
            return Ok(());
        }
        wide_set(self.state, name, value.0).ok_or(RegisterError::UnknownName(name))
    }
}

/// Every register name sidecar supports, for tests and documentation.
pub const SUPPORTED: &[Name] = &[
    Name::Rax,
    Name::Rcx,
    Name::Rdx,
    Name::Rbx,
    Name::Rsp,
    Name::Rbp,
    Name::Rsi,
    Name::Rdi,
    Name::R8,
    Name::R9,
    Name::R10,
    Name::R11,
    Name::R12,
    Name::R13,
    Name::R14,
    Name::R15,
    Name::Rip,
    Name::Rflags,
    Name::Cr0,
    Name::Cr2,
    Name::Cr3,
    Name::Cr4,
    Name::Cr8,
    Name::Xfem,
    Name::Dr7,
    Name::Es,
    Name::Cs,
    Name::Ss,
    Name::Ds,
    Name::Fs,
    Name::Gs,
    Name::Ldtr,
    Name::Tr,
    Name::Idtr,
    Name::Gdtr,
    Name::Efer,
    Name::KernelGsBase,
    Name::Pat,
    Name::SysenterCs,
    Name::SysenterEip,
    Name::SysenterEsp,
    Name::Star,
    Name::Lstar,
    Name::Cstar,
    Name::Sfmask,
    Name::PendingInterruption,
    Name::InterruptState,
    Name::PendingEvent0,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{HvX64SegmentRegister, HvX64TableRegister};
    use std::string::ToString;

    fn vp<'a>(context: &'a mut CpuContextX64, state: &'a mut VpState) -> SoftVp<'a> {
        SoftVp { context, state }
    }

    #[test]
    fn every_supported_register_round_trips_independently() {
        let mut context = CpuContextX64::default();
        let mut state = VpState::default();
        let mut vp = vp(&mut context, &mut state);
        let value = |i: usize| ((i as u128 + 1) << 100) | ((i as u128 + 1) * 0x0101);
        for (i, &name) in SUPPORTED.iter().enumerate() {
            vp.set(name, HvRegisterValue(value(i))).unwrap();
        }
        for (i, &name) in SUPPORTED.iter().enumerate() {
            let value = value(i);
            let got = vp.get(name).unwrap().0;
            let wide = wide_get(&VpState::default(), name).is_some();
            let expected = if wide { value } else { value as u64 as u128 };
            assert_eq!(got, expected, "{name:?}");
        }
    }

    #[test]
    fn general_registers_live_in_the_context_with_cr2_in_rsp_slot() {
        let mut context = CpuContextX64::default();
        let mut state = VpState::default();
        let mut vp = vp(&mut context, &mut state);
        vp.set(Name::Cr2, 0xC2u64.into()).unwrap();
        vp.set(Name::Rsp, 0x5Bu64.into()).unwrap();
        vp.set(Name::R15, 0xF15u64.into()).unwrap();
        assert_eq!(context.gps[CpuContextX64::CR2], 0xC2);
        assert_eq!(context.gps[15], 0xF15);
        assert_eq!(state.rsp, 0x5B);
    }

    #[test]
    fn segments_and_tables_use_their_layouts() {
        let mut context = CpuContextX64::default();
        let mut state = VpState::default();
        let mut vp = vp(&mut context, &mut state);
        let cs = HvX64SegmentRegister {
            base: 0x1000,
            limit: 0xFFFF_FFFF,
            selector: 0x8,
            attributes: 0xC09B,
        };
        vp.set(Name::Cs, cs.into()).unwrap();
        let gdtr = HvX64TableRegister {
            pad: [0; 3],
            limit: 0x17,
            base: 0x2000,
        };
        vp.set(Name::Gdtr, gdtr.into()).unwrap();
        assert_eq!(state.cs, cs);
        assert_eq!(state.gdtr, gdtr);
    }

    #[test]
    fn unknown_names_are_errors() {
        let mut context = CpuContextX64::default();
        let mut state = VpState::default();
        let mut vp = vp(&mut context, &mut state);
        for bad in [0, 0x2_0012, 0x9_0000, u32::MAX] {
            let err = vp.get(Name(bad)).unwrap_err();
            assert_eq!(err, RegisterError::UnknownName(Name(bad)));
            assert!(vp.set(Name(bad), 0u64.into()).is_err());
        }
        assert_eq!(
            RegisterError::UnknownName(Name(0x12345)).to_string(),
            "unknown register name 0x12345"
        );
    }
}
