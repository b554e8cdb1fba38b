//! Helpers shared by integration tests.
pub mod fault_proxy;
pub mod server;
