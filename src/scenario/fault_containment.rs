//! `scenario=fault-containment`: sidecar CPU 2 faults on purpose (a command
//! only this scenario's hooks honour makes it read unmapped memory), and,
//! with 4 or more CPUs, sidecar CPU 3 panics on purpose. Each failure must
//! reach the main kernel through the CPU's pages (the command fails with the
//! CPU and the vector and RIP, or the panic message; the status is REMOVED),
//! and every other sidecar CPU must keep working: registers set and read
//! back, and a guest run to its end.
//!
//! With 8 or more CPUs, three CPUs then break in the ways a fault handler
//! cannot see, and the client's bounds must name each within a second:
//! CPU 5 wedges with interrupts off during a command, CPU 6 ignores the
//! STOP of a RUN_VP, and CPU 7 completes a command without the response IPI.

// Failures are one-line strings by value: there is no allocator to box them.
#![allow(clippy::result_large_err)]

use futures_util::future::join;

use crate::abi::{CpuStatus, HvRegisterAssoc, HvX64RegisterName as Name, SidecarCommand};
use crate::arch::x86_64::cpu::rdtsc;
use crate::arch::x86_64::vectors::RESPONSE_VECTOR;
use crate::main_kernel::client::{self, ClientError, SidecarCpu};
use crate::main_kernel::clock;
use crate::plan;
use crate::report;
use crate::topology::Role;
use crate::vmm::devices::Devices;
use crate::vmm::guests::{expected_compute, Program};
use crate::vmm::{self, ExitCounts, VpEnd};
use crate::vocabulary::report_key;

use super::runtime_hooks::{
    DEAF_TO_STOP_COMMAND, FAULT_COMMAND, NO_RESPONSE_COMMAND, PANIC_COMMAND, WEDGE_COMMAND,
};
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
        match cpu.get_vp_register_values(&[Name::R12]).await {
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
    report::number(report_key::FAULT_CONTAINMENT_WORKING_CPUS, others);
    if sidecar_vps().any(|vp| vp == 7) {
        bounded_failures().await?;
    }
    Ok(())
}

/// The bounds the wedge cases run with: long enough for a loaded machine's
/// real commands, short enough for a test.
const TEST_BOUND_US: u64 = 1_000_000;

/// Sends `command` (a number only the hooks know) to `vp` and returns how
/// the client saw it end.
async fn send_raw(vp: u32, command: u32) -> Result<Result<(), ClientError>, Failure> {
    let Ok(cpu) = SidecarCpu::new(vp) else {
        fail!("cpu {vp} is not up for the bounded-failure cases");
    };
    let fill = |page: &mut crate::abi::CommandPage| {
        page.command = SidecarCommand(command);
        Ok(())
    };
    Ok(cpu.command(fill, |_| ()).await)
}

/// The three failures only the client's bounds can see, each of which must
/// end its command with `TimedOut` naming the CPU and the command.
async fn bounded_failures() -> Result<(), Failure> {
    client::set_bounds(TEST_BOUND_US, TEST_BOUND_US);
    let began = rdtsc();

    match send_raw(5, WEDGE_COMMAND).await? {
        Err(ClientError::TimedOut {
            vp: 5,
            command,
            status: CpuStatus::RUN,
            ..
        }) if command == SidecarCommand(WEDGE_COMMAND) => {}
        other => fail!("the wedged command on cpu 5 gave {other:?}"),
    }

    if let Err(err) = send_raw(6, DEAF_TO_STOP_COMMAND).await? {
        // An unknown command is an error, but the hook ran first.
        if !matches!(err, ClientError::Failed { .. }) {
            fail!("arming cpu 6 gave {err:?}");
        }
    }
    let Ok(deaf) = SidecarCpu::new(6) else {
        fail!("cpu 6 is not up");
    };
    let mut devices = Devices::new(6);
    let mut counts = ExitCounts::default();
    let registers = vmm::start_registers(Program::Spin, 6, 0, 0);
    let run = vmm::run_vp(&deaf, &mut devices, &mut counts, &registers);
    let stop = async {
        clock::sleep_us(10_000).await;
        vmm::stop_reliably(&deaf).await
    };
    match join(run, stop).await.0 {
        Err(ClientError::TimedOut {
            vp: 6,
            command: SidecarCommand::RUN_VP,
            status: CpuStatus::STOP,
            ..
        }) => {}
        other => fail!("the RUN_VP that ignored its STOP on cpu 6 gave {other:?}"),
    }

    let silent = send_raw(7, NO_RESPONSE_COMMAND).await?;
    restore_response_vector(7);
    match silent {
        Err(ClientError::TimedOut {
            vp: 7,
            status: CpuStatus::IDLE,
            ..
        }) => {}
        other => fail!("the command without a response IPI on cpu 7 gave {other:?}"),
    }
    let waited_ms = crate::arch::x86_64::time::ticks_to_us(rdtsc() - began) / 1000;
    info!("fault-containment: a wedged CPU, a deaf RUN_VP and a lost response IPI each failed within the bound ({waited_ms} ms in all)");
    report::number(report_key::FAULT_CONTAINMENT_BOUNDED_MS, waited_ms);
    client::set_bounds(client::COMMAND_BOUND_US, client::STOP_BOUND_US);
    Ok(())
}

/// Puts back the response vector the hook of [`NO_RESPONSE_COMMAND`]
/// cleared on `vp`'s node.
fn restore_response_vector(vp: u32) {
    let node = plan::get().topology.cpus[vp as usize].node;
    if let Some(control) = plan::get().control_page(node as usize) {
        control.response_vector.store(
            u32::from(RESPONSE_VECTOR),
            core::sync::atomic::Ordering::Release,
        );
    }
}
