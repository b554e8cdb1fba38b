//! Queries over the warehouse: the builder and its plan, painting fragments into cubes,
//! masks, band math, composites, and exports.

pub mod budget;
pub mod composite;
pub mod cube;
pub mod engine;
pub mod export;
pub mod expr;
mod paint;
pub mod plan;
pub mod recycle;
pub mod region;

pub use budget::{default_memory_budget, human_bytes};
pub use composite::{group_times, reduce, Period, Reducer, TimeGroup};
pub use cube::{Cube, NativeCube, Stats, Values};
pub use engine::Query;
pub use expr::{preset, Expr, ExprError};
pub use plan::{CubeWindow, QueryPlan};
pub use region::Region;
