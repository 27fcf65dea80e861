//! Command-line tools of the `starling` binary that are not the server.

pub mod policy;
