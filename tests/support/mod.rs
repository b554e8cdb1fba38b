//! Helpers shared by integration tests.
pub mod fault_proxy;
pub mod server;
pub mod stac_api;
pub mod stac_data;
