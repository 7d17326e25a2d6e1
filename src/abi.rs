//! Placeholder: the shared page layouts.
