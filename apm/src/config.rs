//! Configuration: `ELASTIC_APM_*` environment variables and a builder. No I/O beyond reading
//! the environment.
//!
//! PLACEHOLDER: field set fixed, parsing to be completed.

use std::time::Duration;

/// The agent's configuration. Build it with [`Config::builder`] or [`Config::from_env`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) service_name: String,
    pub(crate) service_version: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) service_node_name: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) server_url: String,
    pub(crate) secret_token: Option<String>,
    pub(crate) api_key: Option<String>,
    pub(crate) verify_server_cert: bool,
    pub(crate) enabled: bool,
    pub(crate) recording: bool,
    pub(crate) transaction_sample_rate: f64,
    pub(crate) transaction_max_spans: u32,
    pub(crate) api_request_size: u64,
    pub(crate) api_request_time: Duration,
    pub(crate) server_timeout: Duration,
    pub(crate) max_queue_size: usize,
    pub(crate) global_labels: Vec<(String, String)>,
    /// Problems found while reading the configuration, reported once when the agent starts.
    pub(crate) warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_name: String::from("unknown-rust-service"),
            service_version: None,
            environment: None,
            service_node_name: None,
            hostname: None,
            server_url: String::from("http://localhost:8200"),
            secret_token: None,
            api_key: None,
            verify_server_cert: true,
            enabled: true,
            recording: true,
            transaction_sample_rate: 1.0,
            transaction_max_spans: 500,
            api_request_size: 768 * 1024,
            api_request_time: Duration::from_secs(10),
            server_timeout: Duration::from_secs(5),
            max_queue_size: 1000,
            global_labels: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
            env: false,
        }
    }
    pub fn from_env() -> Config {
        Config::builder().with_env().build()
    }
}

/// Builds a [`Config`]; values set here are overridden by environment variables when
/// [`ConfigBuilder::with_env`] is used (the Elastic precedence: environment over code).
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
    env: bool,
}

impl ConfigBuilder {
    pub fn with_env(mut self) -> Self {
        self.env = true;
        self
    }
    pub fn service_name(mut self, v: impl Into<String>) -> Self {
        self.config.service_name = v.into();
        self
    }
    pub fn server_url(mut self, v: impl Into<String>) -> Self {
        self.config.server_url = v.into();
        self
    }
    pub fn build(self) -> Config {
        self.config
    }
}
