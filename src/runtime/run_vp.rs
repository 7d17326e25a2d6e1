//! RUN_VP on a sidecar CPU: the shared VMRUN loop ([`crate::vmrun`]) on the
//! CPU's own pages, as a task that a STOP cancels.

use executor::Spawner;

use crate::abi::CpuStatus;

use super::this_cpu::{ThisCpu, SIDECAR_TASK_BYTES};
use crate::vmrun::{self, RunEnd};

/// Runs the VP until an intercept for the main kernel, or until VMRUN
/// refuses the state. A STOP cancels the future at one of its `await`s,
/// where the VP's state has always just been saved; the pages' ownership
/// ends with the future.
pub async fn run_vp(this: ThisCpu, spawner: Spawner<SIDECAR_TASK_BYTES>) -> RunEnd {
    let Some(mut pages) = this.own_pages() else {
        unreachable!("dispatch spawns RUN_VP only while the CPU owns its pages, and holds none");
    };
    let stop_requested = || this.status() == CpuStatus::STOP;
    vmrun::run(
        &mut pages.vp_pages(),
        this.identity().vp,
        Some(spawner),
        stop_requested,
    )
    .await
}
