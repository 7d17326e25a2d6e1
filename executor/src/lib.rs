//! Placeholder: the per-CPU executor (issue 3) is written here.
#![no_std]
