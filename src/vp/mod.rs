//! A guest virtual processor's state and the operations the protocol runs on
//! it, as pure logic tested on the host.
//!
//! A VP's general registers and FXSAVE image travel in the command page's
//! `cpu_context` (the layout OpenHCL uses); everything else lives in the
//! *VP-state block*, [`VpState`], which sits in the CPU's register page
//! where the main kernel can read it. [`registers`] reads and writes
//! registers by their Hyper-V names; [`translate`] walks the guest's page
//! tables, through guest RAM ([`GuestRam`]).

pub mod guest_ram;
pub mod registers;
pub mod state;
pub mod translate;

pub use guest_ram::{GuestRam, OutOfRange};
pub use registers::{RegisterError, VpRegisters};
pub use state::{RegisterPage, VpState, INTERRUPT_REQUEST_VALID};
pub use translate::{
    translate_gva, GuestMemory, PagingState, TranslateError, Translation, WalkFailure,
};
