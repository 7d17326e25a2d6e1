//! Placeholder: ACPI table parsing.
