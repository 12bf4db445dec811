//! Conformance suite every store implementation must pass.
