//! Per-destination normalisation of user data before hashing.
