//! Conformance suite every backplane implementation must pass.
