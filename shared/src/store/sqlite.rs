//! SQLite implementation of the store (standalone mode).
