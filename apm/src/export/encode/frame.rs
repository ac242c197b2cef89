//! A stack frame as the intake wants it, in error and span stack traces.

use serde::Serialize;

use crate::export::symbolize::Frame;
use crate::types::meta::Site;

#[derive(Serialize)]
pub(super) struct FrameView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<&'a str>,
    /// Always present: the schema wants `filename` (or `classname`) on every frame.
    filename: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    abs_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lineno: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    colno: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<&'a str>,
    library_frame: bool,
}

impl<'a> FrameView<'a> {
    pub(super) fn resolved(f: &'a Frame) -> Self {
        FrameView {
            function: Some(&f.function),
            filename: &f.filename,
            abs_path: f.abs_path.as_deref(),
            lineno: f.lineno,
            colno: f.colno,
            module: f.module.as_deref(),
            library_frame: f.library_frame,
        }
    }

    /// A log record's file and line.
    #[cfg(any(feature = "log", feature = "tracing"))]
    pub(super) fn file_line(file: &'a str, line: Option<u32>) -> Self {
        FrameView {
            function: None,
            filename: file,
            abs_path: None,
            lineno: line,
            colno: None,
            module: None,
            library_frame: false,
        }
    }

    /// The capture site alone, when no frame could be resolved.
    pub(super) fn site(site: &'a Site) -> Self {
        FrameView {
            function: None,
            filename: site.file,
            abs_path: None,
            lineno: Some(site.line),
            colno: Some(site.column),
            module: Some(site.module),
            library_frame: false,
        }
    }
}
