//! Running the VP (RUN_VP).
//!
//! Until the SVM issue gives sidecar real guests, the VP is a *soft VP*: it
//! reads and writes the VP-state block like a real one, but running it only
//! means waiting, without spinning, until the main kernel stops it. That is
//! enough to exercise the whole command, cancel and completion path.

use core::future::pending;

use super::cpu::LocalCpu;
use crate::arch::x86_64::svm;

/// Turns SVM on for this CPU if the CPU model has it.
pub fn enable_svm(host_save_area: u64) {
    if svm::available() {
        // SAFETY: SVM is available, and the host save area is this CPU's own
        // private page, which nothing else uses.
        unsafe { svm::enable(host_save_area) };
    }
}

/// Runs the VP until an intercept (`true`) or forever; a STOP cancels the
/// future, whose drop leaves the VP-state block as it was.
pub async fn run_vp(_cpu: LocalCpu) -> bool {
    pending::<()>().await;
    true
}
