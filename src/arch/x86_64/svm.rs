//! AMD SVM on this CPU: turning it on, and entering a guest with VMRUN.
//!
//! VMRUN saves and restores only RAX, RSP and RIP of the guest (they live in
//! the VMCB's save area); every other general register is the host's to
//! switch, so [`enter_guest`] loads the guest's from a [`GuestRegisters`]
//! block before VMRUN and stores them back after the exit. Nor do VMRUN and
//! #VMEXIT switch FS, GS, TR and LDTR (with their hidden parts),
//! KernelGsBase, STAR, LSTAR, CSTAR, SFMASK and the SYSENTER MSRs (AMD APM
//! vol. 2, 15.5.2): VMSAVE and VMLOAD do. [`enter_guest`] saves the host's
//! into the host save area (VMSAVE), loads the guest's from the VMCB
//! (VMLOAD), and after the exit saves the guest's back (VMSAVE) and loads
//! the host's (VMLOAD), all with the global interrupt flag clear; without
//! this the guest ran on the host's segments and TSS, and a guest `ltr`
//! or `mov gs` stayed in the host after the exit (a host double fault then
//! took its stack from the guest's TSS). VMSAVE writes only those fields,
//! which the processor's own use of the host save area at VMRUN (the
//! state #VMEXIT restores: ES, CS, SS, DS, GDTR, IDTR, EFER, CR0, CR3, CR4,
//! RFLAGS, RIP, RSP, RAX) does not touch in QEMU's layout; KVM keeps its
//! host's in the same page on AMD hardware. Interrupts: the
//! host runs VMRUN with the global interrupt flag clear and `IF` set, so a
//! physical interrupt that arrives while the guest runs (a request IPI)
//! causes an INTR exit (with the VMCB's INTR intercept and V_INTR_MASKING),
//! and is taken by the host right after `stgi`. The caller clears the flag
//! ([`hold_interrupts`]) before its last checks, not the assembly: an
//! interrupt that arrives after them then stays pending and ends the VMRUN
//! at once, instead of being taken just before it. Assembly is needed because
//! Rust cannot hand its registers to another context.

use core::arch::{asm, global_asm};

use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};

/// MSR VM_HSAVE_PA: where VMRUN saves the host's state.
const VM_HSAVE_PA: u32 = 0xC001_0117;

/// Whether this CPU model offers SVM with nested paging (CPUID
/// 0x8000_0001:ECX bit 2, 0x8000_000A:EDX bit 0).
pub fn available() -> bool {
    // SAFETY: the extended CPUID leaves exist on every x86_64 CPU (leaf
    // 0x8000_0000 reports the highest, checked first); CPUID has no side
    // effects.
    #[allow(unused_unsafe)]
    unsafe {
        use core::arch::x86_64::__cpuid;
        if __cpuid(0x8000_0000).eax < 0x8000_000A {
            return false;
        }
        __cpuid(0x8000_0001).ecx & (1 << 2) != 0 && __cpuid(0x8000_000A).edx & 1 != 0
    }
}

/// Turns SVM on for this CPU with its host save area at physical
/// `host_save_area` (a page only this CPU uses), and enables FXSAVE so the
/// guest's x87/SSE state can be saved and restored around each run.
///
/// # Safety
///
/// `host_save_area` must be a page-aligned physical page reserved for this
/// CPU's VMRUNs; [`available`] must be true.
pub unsafe fn enable(host_save_area: u64) {
    // SAFETY: setting EFER.SVME on a CPU with SVM only allows the SVM
    // instructions; VM_HSAVE_PA takes a page the caller reserved; CR4.OSFXSR
    // and OSXMMEXCPT only enable FXSAVE/FXRSTOR and SSE exceptions, which the
    // kernel itself (soft-float) never uses.
    unsafe {
        Efer::update(|flags| flags.insert(EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE));
        Msr::new(VM_HSAVE_PA).write(host_save_area);
        Cr4::update(|flags| {
            flags.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
        });
    }
}

/// The guest's general registers that VMRUN does not switch (RAX and RSP
/// are in the VMCB), in the order [`enter_guest`]'s assembly uses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct GuestRegisters {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

global_asm!(
    r#"
    .pushsection .text.sidecar_enter_guest, "ax"
    .global sidecar_enter_guest
// rdi = the VMCB's physical address, rsi = &mut GuestRegisters,
// rdx = the host save area's physical address
sidecar_enter_guest:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdx                        // the host save area, for after the exit
    push rsi                        // the register block, for after the exit
    mov rax, rdx
    vmsave rax                      // the host's FS, GS, TR, LDTR, syscall MSRs
    mov rax, rdi
    vmload rax                      // the guest's, from its VMCB
    mov rbx, [rsi + 0]
    mov rcx, [rsi + 8]
    mov rdx, [rsi + 16]
    mov rdi, [rsi + 32]
    mov rbp, [rsi + 40]
    mov r8, [rsi + 48]
    mov r9, [rsi + 56]
    mov r10, [rsi + 64]
    mov r11, [rsi + 72]
    mov r12, [rsi + 80]
    mov r13, [rsi + 88]
    mov r14, [rsi + 96]
    mov r15, [rsi + 104]
    mov rsi, [rsi + 24]
    sti                             // GIF is clear (the caller's CLGI)
    vmrun rax
    // #VMEXIT: the CPU restored the host's RAX (the VMCB's address), RSP
    // and RIP; GIF is clear until the STGI below.
    vmsave rax                      // the guest's FS, GS, TR, ... into its VMCB
    push rsi
    mov rsi, [rsp + 8]
    mov [rsi + 0], rbx
    mov [rsi + 8], rcx
    mov [rsi + 16], rdx
    mov [rsi + 32], rdi
    mov [rsi + 40], rbp
    mov [rsi + 48], r8
    mov [rsi + 56], r9
    mov [rsi + 64], r10
    mov [rsi + 72], r11
    mov [rsi + 80], r12
    mov [rsi + 88], r13
    mov [rsi + 96], r14
    mov [rsi + 104], r15
    pop rax
    mov [rsi + 24], rax
    add rsp, 8
    pop rax
    vmload rax                      // the host's back, before any interrupt
    stgi                            // a pending interrupt (the INTR exit's) is taken here
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
    .popsection
    "#
);

unsafe extern "C" {
    fn sidecar_enter_guest(vmcb: u64, registers: *mut GuestRegisters, host_save_area: u64);
}

/// Clears the global interrupt flag (CLGI): no interrupt is taken until
/// [`release_interrupts`] or the end of [`enter_guest`], and one that
/// arrives meanwhile stays pending (a VMRUN then exits with INTR at once).
/// SVM must be on ([`enable`]); without it CLGI is #UD, a reported fault.
pub fn hold_interrupts() {
    // SAFETY: CLGI only masks interrupts; it touches no memory. No
    // `nomem`: it must also order the compiler's loads after it.
    unsafe { asm!("clgi", options(nostack, preserves_flags)) };
}

/// Sets the global interrupt flag again (STGI) when [`hold_interrupts`]
/// was not followed by [`enter_guest`]; a pending interrupt is taken here.
pub fn release_interrupts() {
    // SAFETY: STGI only unmasks interrupts; the handlers that may run here
    // are the kernel's own. No `nomem`: they may write memory.
    unsafe { asm!("stgi", options(nostack, preserves_flags)) };
}

/// Sets the global interrupt flag if SVM is on: for a CPU that leaves its
/// work for good (a contained fault may have struck between
/// [`hold_interrupts`] and VMRUN), so that INIT and NMI still reach it.
/// Without SVM the flag cannot have been cleared.
pub fn release_interrupts_if_on() {
    if Efer::read().contains(EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE) {
        release_interrupts();
    }
}

/// Runs the guest described by the VMCB at physical `vmcb` until its next
/// exit, with `registers` as its general registers (updated on return).
/// Returns with interrupts enabled, after any interrupt that caused the exit
/// was handled.
///
/// # Safety
///
/// The global interrupt flag must be clear ([`hold_interrupts`]).
/// SVM must be enabled on this CPU ([`enable`]) with `host_save_area` as its
/// host save area; `vmcb` must be the physical address of a valid VMCB
/// (4 KiB aligned) that only this CPU uses, whose nested page tables map
/// only the guest's memory.
pub unsafe fn enter_guest(vmcb: u64, registers: &mut GuestRegisters, host_save_area: u64) {
    // SAFETY: the caller guarantees SVM is on, the VMCB is this CPU's and
    // valid, and the host save area is this CPU's (VMSAVE and VMLOAD use
    // both, with GIF clear, so no interrupt runs on the guest's segments
    // or TSS); the assembly saves and restores every callee-saved register,
    // and VMRUN/#VMEXIT restore RSP, so the Rust caller's state is intact.
    unsafe { sidecar_enter_guest(vmcb, registers, host_save_area) };
}

/// Loads the guest's x87/SSE state from `image` (an FXSAVE image).
///
/// # Safety
///
/// FXSAVE must be enabled ([`enable`]); `image` must be 16-byte aligned.
pub unsafe fn fxrstor(image: &[u8; 512]) {
    // SAFETY: the caller guarantees alignment and CR4.OSFXSR; FXRSTOR only
    // reads the 512 bytes. A malformed MXCSR in the image would #GP: the
    // caller passes images FXSAVE produced or zeroed ones with MXCSR fixed.
    unsafe { asm!("fxrstor [{}]", in(reg) image.as_ptr(), options(nostack, readonly)) };
}

/// Stores this CPU's x87/SSE state (the guest's, after an exit) into
/// `image`.
///
/// # Safety
///
/// As for [`fxrstor`].
pub unsafe fn fxsave(image: &mut [u8; 512]) {
    // SAFETY: the caller guarantees alignment and CR4.OSFXSR; FXSAVE writes
    // exactly the 512 bytes of `image`.
    unsafe { asm!("fxsave [{}]", in(reg) image.as_mut_ptr(), options(nostack)) };
}
