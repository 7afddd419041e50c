//! CGI/1.1 (RFC 3875) between the FastCGI request and the guest: script
//! selection (`script`, §3.3), meta-variables (`env`, §4.1), the request
//! body ([`body`], §4.2) and the response ([`response`], §6). [`Gateway`]
//! does the daemon's part and hands the request to a worker process, where
//! [`job`] runs it in the sandbox.

pub mod body;
mod env;
mod gateway;
pub mod job;
pub mod response;
mod script;

pub use gateway::Gateway;
pub use script::{Router, Routes};
