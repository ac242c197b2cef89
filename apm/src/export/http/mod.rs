//! HTTP to the APM Server: the blocking client (ureq) the transport and central-configuration
//! threads use (`client`), proxies from the environment (`proxy`), TLS (`client/tls.rs`), and
//! how the agent presents itself ([`identity`]: `User-Agent`, `Authorization`).

pub(crate) mod client;
mod endpoint;
pub(crate) mod identity;
pub(crate) mod proxy;
