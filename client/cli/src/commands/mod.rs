//! One file per command of `tooltool [options] COMMAND [FILES]`.

pub mod add;
pub mod change_visibility;
pub mod delete;
pub mod fetch;
pub mod list;
pub mod purge;
pub mod upload;
pub mod validate;
