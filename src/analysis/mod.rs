//! Analyses shared by several rules, built on the function model: database
//! operations, SQL text, external side effects.

pub mod db;
pub mod external;
pub mod sql;
