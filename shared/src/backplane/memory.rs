//! In-process backplane (standalone mode).
