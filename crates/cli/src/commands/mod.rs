//! One module per top-level command.

pub mod audit;
pub mod batch;
pub mod broker;
pub mod ca;
pub mod cert;
pub mod claim;
pub mod crl;
pub mod devsim;
pub mod docs;
pub mod grant;
pub mod init;
pub mod loadtest;
pub mod manifest;
pub mod policy;
pub mod serve;
pub mod slot;
pub mod station;
pub mod template;
pub mod thing;
pub mod token;
