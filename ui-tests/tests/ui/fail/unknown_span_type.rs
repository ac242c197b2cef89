// Span types and subtypes are checked against the Elastic span type registry.
#[apm::span(kind = "databse", subtype = "postgresql")]
fn unknown_type() {}

#[apm::span(kind = "db", subtype = "postgres")]
fn unknown_subtype() {}

#[apm::span(kind = "db")]
fn missing_subtype() {}

#[apm::span(kind = "db", subtype = "sqlite3")]
fn deprecated_subtype() {}

#[apm::span(subtype = "http")]
fn subtype_of_the_default_type() {}

fn main() {
    unknown_type();
    unknown_subtype();
    missing_subtype();
    deprecated_subtype();
    subtype_of_the_default_type();
}
