//! SHA-256 hashing of normalised values (placeholder: filled by the normalisation work).
