//! Analyses shared by several rules, built once over a function's model.

pub mod guards;
