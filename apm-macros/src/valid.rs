//! Semantic checks of the arguments, after they parsed: a span's `kind` and `subtype` must be
//! a type and subtype of the Elastic span type registry ([`crate::span_types`]).

use syn::LitStr;

use crate::attr::{Ctxt, SpanArgs, DEFAULT_KIND};
use crate::span_types::{SpanType, SPAN_TYPES};

/// The arguments of `#[apm::span]` that parsed, checked: every problem reported at once.
pub(crate) fn span_args(args: SpanArgs) -> syn::Result<SpanArgs> {
    let cx = Ctxt::new();
    span_type(&cx, args.kind.as_ref(), args.subtype.as_ref());
    cx.check().map(|()| args)
}

/// Checks `kind` (the default when `None`) and `subtype` against the registry, as its rules
/// say: the type must be listed; a subtype must be one of the type's, unless the type allows
/// unlisted ones; no subtype is accepted only where the type allows a null subtype; a
/// deprecated subtype names its replacement.
pub(crate) fn span_type(cx: &Ctxt, kind: Option<&LitStr>, subtype: Option<&LitStr>) {
    let kind_text = kind.map_or_else(|| DEFAULT_KIND.to_owned(), LitStr::value);
    let Some(span_type) = SPAN_TYPES.iter().find(|t| t.name == kind_text) else {
        // Only a given `kind` can be unknown: the default is in the registry.
        if let Some(kind) = kind {
            let names: Vec<&str> = SPAN_TYPES.iter().map(|t| t.name).collect();
            cx.error_spanned_by(
                kind,
                format_args!(
                    "unknown span type `{kind_text}`{}; the Elastic span types are: {}",
                    suggestion(&kind_text, &names),
                    quoted(&names)
                ),
            );
        }
        return;
    };
    match subtype {
        None if !span_type.allow_null_subtype => {
            // Spanned at `kind`: that is what asks for a subtype.
            if let Some(kind) = kind {
                cx.error_spanned_by(
                    kind,
                    format_args!(
                        "a span of type `{kind_text}` needs a `subtype`, one of: {}",
                        quoted(&listed(span_type))
                    ),
                );
            }
        }
        None => {}
        Some(subtype) => check_subtype(cx, span_type, kind.is_none(), subtype),
    }
}

fn check_subtype(cx: &Ctxt, span_type: &SpanType, kind_defaulted: bool, subtype: &LitStr) {
    let text = subtype.value();
    let of = if kind_defaulted {
        format!("`{}` (the default `kind`)", span_type.name)
    } else {
        format!("`{}`", span_type.name)
    };
    match span_type.subtypes.iter().find(|s| s.name == text) {
        Some(listed) => {
            if let Some(replacement) = listed.replaced_by {
                cx.error_spanned_by(
                    subtype,
                    format_args!(
                        "subtype `{text}` of {of} is deprecated in the Elastic span type \
                         registry: use `{replacement}`"
                    ),
                );
            }
        }
        None if span_type.allow_unlisted_subtype => {}
        None if span_type.subtypes.is_empty() => cx.error_spanned_by(
            subtype,
            format_args!("a span of type {of} takes no subtype"),
        ),
        None => {
            let names = listed(span_type);
            cx.error_spanned_by(
                subtype,
                format_args!(
                    "unknown subtype `{text}` of {of}{}; its subtypes are: {}",
                    suggestion(&text, &names),
                    quoted(&names)
                ),
            );
        }
    }
}

/// The subtypes of a type that are not deprecated.
fn listed(span_type: &SpanType) -> Vec<&'static str> {
    span_type
        .subtypes
        .iter()
        .filter(|s| s.replaced_by.is_none())
        .map(|s| s.name)
        .collect()
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` (did you mean `x`?)` for the name nearest `text`, when one is near enough to be a typo
/// (or `text` is another spelling of it, such as `postgres` for `postgresql`).
fn suggestion(text: &str, names: &[&str]) -> String {
    let lower = text.to_ascii_lowercase();
    let best = names
        .iter()
        .map(|n| {
            let d = if n.starts_with(&lower) && lower.len() >= 3 {
                1
            } else {
                edit_distance(&lower, n)
            };
            (d, *n)
        })
        .min();
    match best {
        Some((d, name)) if d <= 2.max(text.len() / 3) => format!(" (did you mean `{name}`?)"),
        _ => String::new(),
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + cost);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    fn errors(kind: Option<&str>, subtype: Option<&str>) -> Option<String> {
        let lit = |s: &str| LitStr::new(s, Span::call_site());
        let (kind, subtype) = (kind.map(lit), subtype.map(lit));
        let cx = Ctxt::new();
        span_type(&cx, kind.as_ref(), subtype.as_ref());
        cx.check().err().map(|e| e.to_string())
    }

    #[test]
    fn types_and_subtypes_follow_the_registry() {
        assert_eq!(errors(None, None), None);
        assert_eq!(errors(Some("db"), Some("postgresql")), None);
        assert_eq!(errors(Some("app"), None), None);
        assert_eq!(errors(Some("app"), Some("internal")), None);
        assert_eq!(errors(Some("template"), Some("anything")), None);
        let unknown = errors(Some("databse"), None).unwrap_or_default();
        assert!(unknown.contains("unknown span type `databse`"), "{unknown}");
        // Too far from any type for a suggestion.
        assert!(!unknown.contains("did you mean"), "{unknown}");
        let typo = errors(Some("extrenal"), Some("http")).unwrap_or_default();
        assert!(typo.contains("did you mean `external`?"), "{typo}");
        let spelling = errors(Some("db"), Some("postgres")).unwrap_or_default();
        assert!(
            spelling.contains("did you mean `postgresql`?"),
            "{spelling}"
        );
        let missing = errors(Some("db"), None).unwrap_or_default();
        assert!(missing.contains("needs a `subtype`"), "{missing}");
        let none_taken = errors(None, Some("http")).unwrap_or_default();
        assert!(none_taken.contains("the default `kind`"), "{none_taken}");
        let deprecated = errors(Some("db"), Some("sqlite3")).unwrap_or_default();
        assert!(deprecated.contains("use `sqlite`"), "{deprecated}");
        let unlisted = errors(Some("app"), Some("zzz")).unwrap_or_default();
        assert!(unlisted.contains("unknown subtype `zzz`"), "{unlisted}");
    }
}
