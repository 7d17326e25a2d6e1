//! AMD SVM (secure virtual machine) support as pure logic: the data
//! structures a sidecar CPU hands to VMRUN, and the translation between them
//! and the protocol's Hyper-V vocabulary. Everything here builds and is
//! tested on the host; executing VMRUN is `crate::arch::x86_64`'s business.
//!
//! How a guest VP runs on SVM:
//!
//! 1. The host describes the guest in a **VMCB** ([`Vmcb`], [`vmcb`]): a
//!    page whose control area says what the guest may do (intercepts, ASID,
//!    nested paging, the event to inject) and whose state save area holds
//!    the guest's registers. [`Vmcb::load_state`] fills the state from the
//!    protocol's VP-state block.
//! 2. Guest physical memory is the host's through **nested page tables**
//!    ([`npt`]), whose root is the VMCB's N_CR3. GPAs they leave unmapped
//!    (MMIO) stop the guest.
//! 3. VMRUN runs the guest until an intercepted event; the processor then
//!    writes an **exit code** ([`ExitCode`], [`exit_code`]) and its details
//!    into the VMCB.
//! 4. The exit becomes a Hyper-V **intercept message** ([`exits`]) for the
//!    main kernel's VMM, or is handled by the sidecar CPU itself (a physical
//!    interrupt), and the VP's state moves back to the VP-state block
//!    ([`vp_transfer`]).
//!
//! Facts from the AMD64 Architecture Programmer's Manual vol. 2 (chapter 15,
//! appendices B and C) and from measurements under QEMU's TCG, which differs
//! from hardware in places noted where they matter (no NRIP-save, 32-bit
//! negative exit codes).

pub mod exit_code;
pub mod exits;
pub mod npt;
pub mod vmcb;
pub mod vp_transfer;

pub use exit_code::ExitCode;
pub use exits::{handled_by_sidecar, intercept_message};
pub use npt::{NestedTables, NptError};
pub use vmcb::{Vmcb, VmcbControl, VmcbSave, VmcbSegment};
