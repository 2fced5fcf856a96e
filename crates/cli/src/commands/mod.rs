//! One module per top-level command.

pub mod audit;
pub mod batch;
pub mod ca;
pub mod cert;
pub mod crl;
pub mod devsim;
pub mod init;
pub mod manifest;
pub mod serve;
pub mod station;
pub mod thing;
pub mod token;
