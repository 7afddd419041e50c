//! CGI/1.1 (RFC 3875) between the FastCGI request and the guest: script
//! selection (`script`, §3.3), meta-variables (`env`, §4.1), the request
//! body ([`body`], §4.2) and the response ([`response`], §6). [`Gateway`]
//! turns a request into a [`job`] that runs its guest in the sandbox, which
//! the [`watchdog`] stops if the web server gives up on the request.

pub mod body;
mod env;
mod gateway;
pub mod imports;
pub mod job;
pub mod response;
mod script;
pub mod shebang;
pub mod watchdog;

pub use env::MetaVars;
pub use gateway::Gateway;
pub use script::Router;
pub use watchdog::Watchdog;
