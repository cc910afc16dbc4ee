//! audit log
