//! How the agent presents itself to the APM Server: its name and version, the `User-Agent`
//! of every request and the `Authorization` header.

use crate::config::Config;

/// The agent's name in the metadata and the `User-Agent`.
pub(crate) const AGENT_NAME: &str = "rust";
/// The agent's version.
pub(crate) const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `User-Agent` of every request: `apm-agent-rust/<version> (<service> <version>)`, the
/// parenthesised part escaped as an RFC 7230 comment (`(`, `)`, `\` and controls → `_`).
pub(crate) fn user_agent(config: &Config) -> String {
    let esc = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if matches!(c, '(' | ')' | '\\') || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect()
    };
    let mut ua = format!("apm-agent-{AGENT_NAME}/{AGENT_VERSION}");
    match &config.service_version {
        Some(v) => ua.push_str(&format!(" ({} {})", esc(&config.service_name), esc(v))),
        None => ua.push_str(&format!(" ({})", esc(&config.service_name))),
    }
    ua
}

/// The `Authorization` header: an API key wins over a secret token.
pub(crate) fn authorization(config: &Config) -> Option<String> {
    match (&config.api_key, &config.secret_token) {
        (Some(k), _) if !k.is_empty() => Some(format!("ApiKey {k}")),
        (_, Some(t)) if !t.is_empty() => Some(format!("Bearer {t}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_and_authorization_follow_the_transport_spec() {
        let mut c = Config::builder().service_name("shop").build();
        assert!(user_agent(&c).starts_with("apm-agent-rust/"));
        assert!(user_agent(&c).ends_with(" (shop)"));
        c.service_version = Some("1(2)\\3".into());
        assert!(
            user_agent(&c).ends_with(" (shop 1_2__3)"),
            "{}",
            user_agent(&c)
        );
        assert_eq!(authorization(&c), None);
        c.secret_token = Some("t".into());
        assert_eq!(authorization(&c).as_deref(), Some("Bearer t"));
        c.api_key = Some("k".into());
        assert_eq!(authorization(&c).as_deref(), Some("ApiKey k"));
    }
}
