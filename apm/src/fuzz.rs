//! What the fuzz targets (`fuzz/`, run by `fuzz/run.sh`) feed with arbitrary bytes: every
//! parser of input that comes from outside the process. Each function panics only when a
//! property it checks fails; a crash is a bug. The inputs that found one are kept in
//! `fuzz/regressions/<target>/` and replayed by this module's tests, with the seeds the fuzzer
//! starts from (`fuzz/seeds/<target>/`).

use crate::config::{options, parse, Config, Source};
use crate::util::wildcard::WildcardList;

/// Splits an input in two at its first newline.
fn two_parts(data: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(text.split_once('\n').unwrap_or((text, "")))
}

/// `traceparent` (first line) and `tracestate` (the rest): what is accepted is sent on
/// unchanged in meaning, and what is sent on parses again to the same.
pub fn trace_context(data: &[u8]) {
    let Some((traceparent, tracestate)) = two_parts(data) else {
        return;
    };
    crate::capture::check_trace_context(traceparent, tracestate);
}

/// An option's value as the environment or Kibana gives it (the first byte picks the option):
/// an accepted value shows in the option's own format, which is accepted again as the same.
pub fn config_value(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let all = options();
    let option = &all[usize::from(pick) % all.len()];
    let mut config = Config::default();
    if config
        .set_option(option.name(), text, Source::Environment)
        .is_err()
    {
        return;
    }
    let shown = (option.get)(&config);
    let mut again = Config::default();
    again
        .set_option(option.name(), &shown, Source::Environment)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {text:?} shows as {shown:?}, refused: {e}",
                option.name()
            )
        });
    assert_eq!((option.get)(&again), shown, "{}: {text:?}", option.name());
}

/// A list of wildcard patterns (first line, as configured) matched against a text (the rest).
pub fn wildcard(data: &[u8]) {
    let Some((patterns, text)) = two_parts(data) else {
        return;
    };
    let list = WildcardList::parse(&parse::parse_list(patterns));
    let _ = list.any_match(text);
    assert!(WildcardList::parse(&["*".to_owned()]).any_match(text));
}

/// The SQL scanner behind span names.
pub fn sql(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::util::sql::signature(text);
    }
}

/// The body of a central configuration answer, applied to a configuration.
pub fn central_config(data: &[u8]) {
    crate::agent::read_any_central_config(data);
}

/// Any text written as a JSON string, cut to a limit (the first byte): it reads back as the
/// text cut to that many characters.
pub fn json_string(data: &[u8]) {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        crate::export::check_json_string(text, usize::from(limit));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays the seeds and the inputs that once crashed a target
    /// (`fuzz/{seeds,regressions}/<target>/*`).
    #[test]
    fn seeds_pass_and_the_inputs_that_found_bugs_stay_fixed() {
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 6] = [
            ("trace_context", super::trace_context),
            ("config_value", super::config_value),
            ("wildcard", super::wildcard),
            ("sql", super::sql),
            ("central_config", super::central_config),
            ("json_string", super::json_string),
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for (name, target) in targets {
            let mut replayed = 0;
            for kind in ["seeds", "regressions"] {
                let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) else {
                    continue;
                };
                for entry in dir {
                    let path = entry.expect("a readable directory").path();
                    let input = std::fs::read(&path).expect("a readable input");
                    target(&input);
                    replayed += 1;
                }
            }
            assert!(replayed > 0, "no seed for {name} under {}", root.display());
        }
    }
}
