//! The interrupt descriptor table and the common entry path of every vector.
//!
//! Each of the 256 vectors enters through a 16-byte assembly stub that pushes
//! a uniform frame (a zero error code where the CPU pushes none, then the
//! vector number) and jumps to one common routine, which saves the general
//! registers and calls [`interrupt_dispatch`] with a [`TrapFrame`]. Exceptions
//! (vectors 0..32) are fatal and reported by [`crate::fatal`]; device and
//! IPI vectors go to the handler registered with [`set_handler`].
//!
//! Assembly is needed because Rust cannot save the interrupted context or
//! return with `iretq`.

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Once;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

use super::gdt::DOUBLE_FAULT_IST_INDEX;

/// The registers the entry path saved, in the order it pushed them (lowest
/// address first), followed by what the CPU pushed.
#[derive(Debug)]
#[repr(C)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The vector the CPU took.
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors that have none.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const STUB_SIZE: u64 = 16;

// 256 stubs, each 16-byte aligned so stub n is at interrupt_stubs + 16 * n.
// The CPU pushes an error code itself for vectors 8, 10-14, 17, 21, 29 and 30;
// every other stub pushes a zero in its place.
global_asm!(
    r#"
    .pushsection .text.interrupt_stubs, "ax"
    .p2align 4
    .global sidecar_interrupt_stubs
sidecar_interrupt_stubs:
    .set vector, 0
    .rept 256
    .p2align 4
    .if vector == 8 || vector == 10 || vector == 11 || vector == 12 || vector == 13 || vector == 14 || vector == 17 || vector == 21 || vector == 29 || vector == 30
    .else
    push 0
    .endif
    push vector
    jmp sidecar_interrupt_common
    .set vector, vector + 1
    .endr

sidecar_interrupt_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    // The CPU aligned RSP to 16 before its 5-word frame; with the 2 words of
    // the stub and 15 registers (22 words in all) it is aligned again here.
    mov rdi, rsp
    cld
    call {dispatch}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16                     // vector and error code
    iretq
    .popsection
    "#,
    dispatch = sym interrupt_dispatch,
);

unsafe extern "C" {
    static sidecar_interrupt_stubs: u8;
}

fn stub_address(vector: u8) -> VirtAddr {
    let base = &raw const sidecar_interrupt_stubs as u64;
    VirtAddr::new(base + STUB_SIZE * u64::from(vector))
}

/// A handler for a non-exception vector; it runs with interrupts off and must
/// acknowledge the interrupt itself (local APIC EOI) when that is needed.
pub type Handler = fn(&mut TrapFrame);

/// Registered handlers, as `fn` pointers (0 = none), indexed by vector.
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Routes `vector` (32 or above) to `handler` on every CPU.
pub fn set_handler(vector: u8, handler: Handler) {
    assert!(vector >= 32, "vector {vector} is an exception vector");
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}

static IDT: Once<InterruptDescriptorTable> = Once::new();

fn build_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: for every `set_handler_addr` below, the address is that of the
    // stub for the entry's own vector, and each stub matches the CPU's frame
    // for its vector (it pushes a zero only where the CPU pushes no error
    // code).
    unsafe {
        idt.divide_error.set_handler_addr(stub_address(0));
        idt.debug.set_handler_addr(stub_address(1));
        idt.non_maskable_interrupt.set_handler_addr(stub_address(2));
        idt.breakpoint.set_handler_addr(stub_address(3));
        idt.overflow.set_handler_addr(stub_address(4));
        idt.bound_range_exceeded.set_handler_addr(stub_address(5));
        idt.invalid_opcode.set_handler_addr(stub_address(6));
        idt.device_not_available.set_handler_addr(stub_address(7));
        idt.double_fault
            .set_handler_addr(stub_address(8))
            .set_stack_index(DOUBLE_FAULT_IST_INDEX);
        idt.invalid_tss.set_handler_addr(stub_address(10));
        idt.segment_not_present.set_handler_addr(stub_address(11));
        idt.stack_segment_fault.set_handler_addr(stub_address(12));
        idt.general_protection_fault
            .set_handler_addr(stub_address(13));
        idt.page_fault.set_handler_addr(stub_address(14));
        idt.x87_floating_point.set_handler_addr(stub_address(16));
        idt.alignment_check.set_handler_addr(stub_address(17));
        idt.machine_check.set_handler_addr(stub_address(18));
        idt.simd_floating_point.set_handler_addr(stub_address(19));
        idt.virtualization.set_handler_addr(stub_address(20));
        idt.cp_protection_exception
            .set_handler_addr(stub_address(21));
        idt.hv_injection_exception
            .set_handler_addr(stub_address(28));
        idt.vmm_communication_exception
            .set_handler_addr(stub_address(29));
        idt.security_exception.set_handler_addr(stub_address(30));
        for vector in 32..=255u8 {
            idt[vector].set_handler_addr(stub_address(vector));
        }
    }
    idt
}

/// Loads the shared IDT on the running CPU, building it on first use.
pub fn load_idt() {
    IDT.call_once(build_idt).load();
}

/// The one Rust entry point of every interrupt and exception.
extern "C" fn interrupt_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    if vector < 32 {
        crate::fatal::exception(frame);
    }
    let handler = HANDLERS[usize::from(vector)].load(Ordering::Acquire);
    if handler == 0 {
        crate::fatal::unexpected_interrupt(frame);
    }
    // SAFETY: non-zero entries are only ever stored by `set_handler`, from a
    // value of type `Handler`.
    let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
    handler(frame);
}
