//! Placeholder: the runner library (issue 2) is written here.
