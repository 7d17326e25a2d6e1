//! `scenario=garbage`: every sidecar CPU gets a run of malformed commands,
//! and must answer each with an error and stay usable.
//!
//! Per CPU, from a fixed seed (`0x5eed ^ vp`), [`GARBAGE_PER_CPU`] bad
//! commands, each one of:
//!
//! - an unknown command number (≥ 5) over a request area of random bytes;
//! - GET/SET_VP_REGISTERS with a count of 32 ..= `u16::MAX`;
//! - GET/SET_VP_REGISTERS of up to 31 registers, at least one of them an
//!   unknown name (garbage, or a near miss of a real one);
//! - GET/SET_VP_REGISTERS of known registers for a VTL other than 0;
//! - TRANSLATE_GVA of a GVN whose address is not canonical or overflows.
//!
//! The driver's side of the page is scribbled too (a stale `has_error` and
//! error message), which the CPU must reset. Each bad command must come back
//! as [`ClientError::Failed`] with a non-empty message saying what was
//! wrong, except the bad GVN: as from Hyper-V's TranslateVirtualAddressEx,
//! its answer is the response's status INVALID_PARAMETER, with `has_error`
//! clear. After each one, a good round: RIP and RAX must still hold what the
//! last good SET stored (the bad command changed nothing), then a SET of
//! fresh values and a GET that must return them.
//!
//! The generator produces only invalid requests. A bad VTL byte is any byte
//! but a supported one, including those whose only fault is a reserved bit
//! (`0x20`, `0x30`): for a SET the "changed nothing" check then pins that
//! the registers stay as they were (the fuzz test found a SET that set them
//! while answering with an error; fixed).

// Failures are one-line strings by value: there is no allocator to box them.
#![allow(clippy::result_large_err)]

use super::rng::Rng;
use super::{sidecar_cpus, Failure};
use core::fmt::Write;

use zerocopy::IntoBytes;

use crate::abi::client::{self as requests, CommandFailure};
use crate::abi::{
    CommandPage, GetSetVpRegisterRequest, HvInputVtl, HvRegisterAssoc, HvRegisterValue, HvStatus,
    HvX64RegisterName as Name, SidecarCommand, TranslateGvaControlFlagsX64, TranslateGvaRequest,
    MAX_GET_SET_VP_REGISTERS,
};
use crate::main_kernel::client::{ClientError, SidecarCpu};
use crate::report;
use crate::vocabulary::report_key;
use crate::vp::registers::SUPPORTED;

/// Bad commands sent to each sidecar CPU.
pub const GARBAGE_PER_CPU: u32 = 30;

/// What a bad command looked like, for failure messages.
type Description = heapless::String<96>;

/// Register names drawn from the scenarios' generator (deterministic, so
/// that a failing run can be replayed).
trait RegisterNames {
    fn known_name(&mut self) -> Name;
    fn unknown_name(&mut self) -> Name;
}

impl RegisterNames for Rng {
    fn known_name(&mut self) -> Name {
        SUPPORTED[self.below(SUPPORTED.len() as u64) as usize]
    }

    /// A register name sidecar does not know: garbage, or a near miss of a
    /// real one (one bit off, the next index of its class).
    fn unknown_name(&mut self) -> Name {
        loop {
            let near = self.known_name().0;
            let candidate = match self.below(4) {
                0 => self.next() as u32,
                1 => near ^ (1 << self.below(32)),
                2 => near.wrapping_add(1),
                _ => near | 0x8000_0000,
            };
            if !SUPPORTED.contains(&Name(candidate)) {
                return Name(candidate);
            }
        }
    }
}

/// The kinds of bad command, each with the text its error must contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    UnknownCommand,
    TooManyRegisters,
    UnknownName,
    BadVtl,
    BadGvn,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::UnknownCommand,
        Kind::TooManyRegisters,
        Kind::UnknownName,
        Kind::BadVtl,
        Kind::BadGvn,
    ];

    fn expected(self) -> &'static str {
        match self {
            Kind::UnknownCommand => "unknown command",
            Kind::TooManyRegisters => "registers, at most 31 fit",
            Kind::UnknownName => "unknown register name",
            Kind::BadVtl => "unsupported target VTL",
            Kind::BadGvn => "status INVALID_PARAMETER",
        }
    }
}

/// Writes one bad command of `kind` into `page` from `seed`, and says what
/// it was in `what`.
fn write_garbage(page: &mut CommandPage, kind: Kind, seed: u64, what: &mut Description) {
    let mut rng = Rng::new(seed);
    // Whatever the driver side left in the page: junk everywhere the
    // request goes, and a stale error the CPU must clear.
    rng.fill(page.request_data.as_mut_bytes());
    page.has_error = rng.next() as u8;
    page.error.set("stale error left by the driver");
    let registers = if rng.below(2) == 0 {
        SidecarCommand::GET_VP_REGISTERS
    } else {
        SidecarCommand::SET_VP_REGISTERS
    };
    let verb = if registers == SidecarCommand::GET_VP_REGISTERS {
        "GET"
    } else {
        "SET"
    };
    match kind {
        Kind::UnknownCommand => {
            // Any number: no scenario hook is installed here, so even the
            // fault-containment test's numbers are just unknown commands.
            let command = 5 + (rng.next() as u32) % (u32::MAX - 5);
            page.command = SidecarCommand(command);
            let _ = write!(what, "command {command:#x}");
        }
        Kind::TooManyRegisters => {
            let count = (32 + rng.below(u64::from(u16::MAX) - 31)) as u16;
            page.command = registers;
            // The VTL and the reserved bytes stay random.
            page.request_mut::<GetSetVpRegisterRequest>().count = count;
            let _ = write!(what, "{verb} of {count} registers");
        }
        Kind::UnknownName | Kind::BadVtl => {
            let count = 1 + rng.below(MAX_GET_SET_VP_REGISTERS as u64) as usize;
            let vtl = match kind {
                Kind::UnknownName => {
                    if rng.below(2) == 0 {
                        HvInputVtl::CURRENT_VTL
                    } else {
                        HvInputVtl::target(0)
                    }
                }
                // Any byte but a supported one: VTL 0 or the current VTL,
                // with no reserved bit set.
                _ => loop {
                    let vtl = rng.next() as u8;
                    let supported = vtl & 0xE0 == 0 && (vtl & 0x10 == 0 || vtl & 0x0F == 0);
                    if !supported {
                        break HvInputVtl::from_bits(vtl);
                    }
                },
            };
            let bad = (kind == Kind::UnknownName).then(|| rng.below(count as u64) as usize);
            let mut list = [HvRegisterAssoc::new(Name::Rax, 0u64); MAX_GET_SET_VP_REGISTERS];
            for (i, register) in list.iter_mut().take(count).enumerate() {
                let name = if Some(i) == bad || (bad.is_some() && rng.below(8) == 0) {
                    rng.unknown_name()
                } else {
                    rng.known_name()
                };
                let value = u128::from(rng.next()) << 64 | u128::from(rng.next());
                *register = HvRegisterAssoc::new(name, HvRegisterValue(value));
            }
            let _ = page.set_registers_request(registers, vtl, &list[..count]);
            // Garbage in the reserved header bytes and the status too.
            let header = page.request_mut::<GetSetVpRegisterRequest>();
            header.rsvd = rng.next() as u8;
            header.status = HvStatus(rng.next() as u16);
            match list[..count].iter().find(|r| !SUPPORTED.contains(&r.name)) {
                Some(unknown) => {
                    let _ = write!(
                        what,
                        "{verb} of {count} registers with unknown name {:#x}",
                        unknown.name.0
                    );
                }
                None => {
                    let _ = write!(
                        what,
                        "{verb} of {count} registers for VTL byte {:#x}",
                        vtl.into_bits()
                    );
                }
            }
        }
        Kind::BadGvn => {
            // Either the GVA overflows 64 bits, or it lands between the two
            // canonical halves.
            let gvn = if rng.below(2) == 0 {
                rng.next() | 1 << 52
            } else {
                1 << 35 | (rng.next() & ((1 << 51) - 1))
            };
            page.command = SidecarCommand::TRANSLATE_GVA;
            *page.request_mut() = TranslateGvaRequest {
                gvn,
                control_flags: TranslateGvaControlFlagsX64(rng.next()),
            };
            let _ = write!(what, "TRANSLATE_GVA of GVN {gvn:#x}");
        }
    }
}

/// RIP and RAX must still hold `expected`: the bad command before changed
/// nothing.
async fn check_unchanged(
    cpu: &SidecarCpu,
    expected: (u64, u64),
    after: &str,
) -> Result<(), Failure> {
    let vp = cpu.vp();
    match cpu.get_vp_register_values(&[Name::Rip, Name::Rax]).await {
        Ok(values) => {
            let got = (values[0].as_u64(), values[1].as_u64());
            check!(
                got == expected,
                "cpu {vp}: after {after}: RIP, RAX are {got:#x?}, the last good SET stored {expected:#x?}"
            );
            Ok(())
        }
        Err(err) => fail!("cpu {vp}: a GET after {after} failed: {err}"),
    }
}

/// A SET of RIP and RAX, then a GET that must return what was set.
async fn set_and_check(cpu: &SidecarCpu, values: (u64, u64), after: &str) -> Result<(), Failure> {
    let vp = cpu.vp();
    let set = [
        HvRegisterAssoc::new(Name::Rip, values.0),
        HvRegisterAssoc::new(Name::Rax, values.1),
    ];
    if let Err(err) = cpu.set_vp_registers(&set).await {
        fail!("cpu {vp}: a SET after {after} failed: {err}");
    }
    check_unchanged(cpu, values, after).await
}

/// One CPU's run of bad commands, each followed by a good round. Returns
/// how many bad commands it sent.
async fn garbage_on(cpu: &SidecarCpu) -> Result<u32, Failure> {
    let vp = cpu.vp();
    let mut rng = Rng::new(0x5eed ^ u64::from(vp));
    let fresh = |rng: &mut Rng| {
        (
            0x1000 | u64::from(vp) << 32 | rng.below(1 << 20),
            rng.next(),
        )
    };
    let mut current = fresh(&mut rng);
    set_and_check(cpu, current, "the start").await?;
    for n in 0..GARBAGE_PER_CPU {
        let kind = Kind::ALL[rng.below(Kind::ALL.len() as u64) as usize];
        let seed = rng.next();
        let mut what = Description::new();
        let result = cpu
            .command(
                |page| {
                    write_garbage(page, kind, seed, &mut what);
                    Ok(())
                },
                // Read only if `has_error` is clear: a TRANSLATE_GVA's status.
                |page| requests::read_translate(page).err(),
            )
            .await;
        match result {
            Ok(Some(CommandFailure::Hypervisor(HvStatus::INVALID_PARAMETER)))
                if kind == Kind::BadGvn => {}
            Err(ClientError::Failed { vp: from, message }) if kind != Kind::BadGvn => {
                check!(
                    from == vp && !message.is_empty(),
                    "cpu {vp}: bad command {n} ({what}): error {message:?} from cpu {from}"
                );
                check!(
                    message.contains(kind.expected()),
                    "cpu {vp}: bad command {n} ({what}): error {message:?} does not say {:?}",
                    kind.expected()
                );
            }
            other => fail!("cpu {vp}: bad command {n} ({what}) gave {other:?}, expected an error"),
        }
        let mut after = heapless::String::<112>::new();
        let _ = write!(after, "bad command {n} ({what})");
        check_unchanged(cpu, current, &after).await?;
        current = fresh(&mut rng);
        set_and_check(cpu, current, &after).await?;
    }
    Ok(GARBAGE_PER_CPU)
}

/// The scenario.
pub async fn run() -> Result<(), Failure> {
    let count = sidecar_cpus().count();
    check!(
        count > 0,
        "the garbage scenario needs a sidecar CPU (use --cpus 2 or more)"
    );
    let mut commands = 0;
    for cpu in sidecar_cpus() {
        commands += garbage_on(&cpu).await?;
    }
    info!("garbage: {commands} bad commands on {count} sidecar CPUs, each answered with an error; every CPU stayed usable");
    report::number(report_key::GARBAGE_COMMANDS, u64::from(commands));
    report::number(report_key::GARBAGE_CPUS, count as u64);
    Ok(())
}
