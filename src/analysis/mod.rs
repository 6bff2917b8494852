//! Analyses shared by several rules, built on the function model: database
//! operations, SQL text, external side effects, guards and locks.

pub mod db;
pub mod external;
pub mod guards;
pub mod sql;
