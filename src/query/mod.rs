//! Queries over the warehouse: band math now; cubes, masks, composites and exports as the
//! warehouse lands.

pub mod composite;
pub mod cube;
pub mod engine;
pub mod export;
pub mod expr;
mod paint;
pub mod region;

pub use composite::{group_times, reduce, Period, Reducer, TimeGroup};
pub use cube::{Cube, NativeCube, Stats};
pub use engine::Query;
pub use expr::{preset, Expr, ExprError};
pub use region::Region;
