//! What happens to an upload after `POST /upload` handed out its URLs: verification of the
//! staged bytes ([`verify`], behind `upload/complete`) and the sweeper that removes staged
//! uploads never completed ([`sweep`]).

pub mod parts;
pub mod sweep;
pub mod verify;
