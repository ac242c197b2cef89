//! Placeholder (integration being written).
