//! The HTTP layer (L3): what turns requests into calls on the layers below and their results
//! into answers.

pub mod gate;
