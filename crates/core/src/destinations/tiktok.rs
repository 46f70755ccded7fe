//! Placeholder: filled by the destination-builders work.
