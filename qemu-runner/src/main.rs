//! `cargo qemu`: build the sidecar kernel, boot it in QEMU, print a verdict.
//!
//! A thin layer over the `qemu_runner` library: [`cli`] turns flags into a
//! [`RunConfig`](qemu_runner::RunConfig) and prints the summary. Exit status:
//! 0 on a pass, 1 on a kernel failure, 2 on a usage or environment error
//! (among them a JSON report that could not be written, told after the
//! verdict).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
