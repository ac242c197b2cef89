//! Plain functions: defaults, every argument, early return, nesting, `-> !`.
#![deny(warnings)]

#[apm::transaction]
fn unit() {}

#[apm::transaction(name = "checkout", kind = "request")]
fn value(x: u32) -> u32 {
    x + 1
}

#[apm::span(name = "load", kind = "db", subtype = "postgresql", action = "query")]
fn early_return(x: i32) -> &'static str {
    if x < 0 {
        return "negative";
    }
    "non-negative"
}

#[apm::span(kind = "app", subtype = "internal")]
fn r#type() -> u8 {
    7
}

#[apm::transaction]
fn outer() -> u32 {
    #[apm::span]
    fn inner(x: u32) -> u32 {
        x * 2
    }

    struct S;
    impl S {
        #[apm::span]
        fn get(&self) -> u32 {
            3
        }
    }

    inner(value(1)) + S.get()
}

#[apm::span]
fn diverges(message: &str) -> ! {
    panic!("{message}")
}

#[apm::span]
fn loops_forever_or_exits(code: i32) -> ! {
    if code >= 0 {
        diverges("stop")
    }
    loop {}
}

// One-line body: the user's braces must not trip `unused_braces` once nested.
#[rustfmt::skip]
#[apm::span]
fn one_line() -> u8 { 1 }

#[apm::span]
fn with_statics() -> usize {
    // A user item with the same kind of name as ours lives in the user's own scope.
    static META: &str = "user";
    META.len()
}

#[apm::span]
fn closure_inside(v: Vec<u32>) -> u32 {
    v.iter().map(|x| x * 2).sum()
}

fn main() {
    unit();
    assert_eq!(value(1), 2);
    assert_eq!(early_return(-1), "negative");
    assert_eq!(early_return(1), "non-negative");
    assert_eq!(r#type(), 7);
    assert_eq!(outer(), 7);
    assert_eq!(with_statics(), 4);
    assert_eq!(one_line(), 1);
    assert_eq!(closure_inside(vec![1, 2]), 6);
    std::panic::set_hook(Box::new(|_| {}));
    let panicked = std::thread::spawn(|| diverges("boom")).join();
    assert!(panicked.is_err());
    let panicked = std::thread::spawn(|| loops_forever_or_exits(0)).join();
    assert!(panicked.is_err());
}
