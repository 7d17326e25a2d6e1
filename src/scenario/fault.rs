//! `scenario=fault-containment`: sidecar CPU 2 faults on purpose (a command
//! only this scenario honours makes it read unmapped memory), and, with 4
//! or more CPUs, sidecar CPU 3 panics on purpose. Each failure must reach
//! the main kernel through the CPU's pages (the command fails with the CPU
//! and the vector and RIP, or the panic message; the status is REMOVED), and
//! every other sidecar CPU must keep working: registers set and read back,
//! and a guest run to its end.

// Failures are one-line strings by value: there is no allocator to box them.
#![allow(clippy::result_large_err)]

use crate::abi::{HvRegisterAssoc, HvX64RegisterName as Name, SidecarCommand};
use crate::main_kernel::client::{ClientError, SidecarCpu};
use crate::plan;
use crate::report;
use crate::topology::Role;
use crate::vmm::devices::Devices;
use crate::vmm::guests::{expected_compute, Program};
use crate::vmm::{self, ExitCounts, VpEnd};

use super::hooks::{FAULT_COMMAND, PANIC_COMMAND};
use super::Failure;

fn sidecar_vps() -> impl Iterator<Item = u32> {
    plan::get()
        .topology
        .cpus
        .iter()
        .filter(|c| c.role == Role::Sidecar)
        .map(|c| c.vp)
}

/// The scenario.
pub async fn run() -> Result<(), Failure> {
    let Some(victim) = sidecar_vps().find(|&vp| vp == 2) else {
        fail!("the fault-containment scenario needs sidecar CPU 2 (use --cpus 3 or more)");
    };
    vmm::prepare_memory(sidecar_vps());
    let cpu = SidecarCpu::new(victim)
        .map_err(|_| Failure::try_from("cpu 2 is not up").unwrap_or_default())?;
    let result = cpu
        .command(
            |page| {
                page.command = SidecarCommand(FAULT_COMMAND);
                Ok(())
            },
            |_| (),
        )
        .await;
    match result {
        Err(ClientError::Failed { message, .. })
            if message.starts_with("cpu 2: #PF page fault (vector 14) at rip ") => {}
        other => fail!("the faulting command gave {other:?}"),
    }
    if SidecarCpu::new(victim).err() != Some(ClientError::NotSidecar(victim)) {
        fail!("the faulted CPU still accepts commands");
    }
    let panicked = match SidecarCpu::new(3) {
        Ok(cpu) => {
            let result = cpu
                .command(
                    |page| {
                        page.command = SidecarCommand(PANIC_COMMAND);
                        Ok(())
                    },
                    |_| (),
                )
                .await;
            match result {
                Err(ClientError::Failed { message, .. })
                    if message.starts_with("cpu 3: panic: fault-containment: deliberate panic") => {
                }
                other => fail!("the panicking command gave {other:?}"),
            }
            Some(3)
        }
        Err(_) => None,
    };
    info!("fault-containment: cpu 2's fault reached the main kernel; the others go on");

    let mut others = 0u64;
    for vp in sidecar_vps().filter(|&vp| vp != victim && Some(vp) != panicked) {
        let cpu = match SidecarCpu::new(vp) {
            Ok(cpu) => cpu,
            Err(err) => fail!("cpu {vp}: {err}"),
        };
        let value = 0xC0FFEE00 | u64::from(vp);
        if let Err(err) = cpu
            .set_vp_registers(&[HvRegisterAssoc::new(Name::R12, value)])
            .await
        {
            fail!("cpu {vp} after the fault: {err}");
        }
        match cpu.get_vp_registers(&[Name::R12]).await {
            Ok(values) if values.first().map(|v| v.as_u64()) == Some(value) => {}
            other => fail!("cpu {vp} after the fault: read back {other:?}"),
        }
        let mut devices = Devices::new(vp);
        let mut counts = ExitCounts::default();
        let registers = vmm::start_registers(Program::Compute, vp, 7, 1000);
        match vmm::run_vp(&cpu, &mut devices, &mut counts, &registers).await {
            Ok(VpEnd::Exited) if devices.reports.result == Some(expected_compute(7, 1000)) => {}
            other => fail!("cpu {vp} after the fault: its guest gave {other:?}"),
        }
        others += 1;
    }
    report::number("fault_containment.working_cpus", others);
    Ok(())
}
