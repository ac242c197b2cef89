//! Methods with every receiver, with and without a `Result` return (the closure path), in
//! inherent impls, trait impls and trait default methods.
#![deny(warnings)]

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
struct Counter {
    n: u32,
    name: String,
}

impl Counter {
    #[apm::span]
    fn new(n: u32) -> Self {
        Counter {
            n,
            name: "c".into(),
        }
    }

    #[apm::span]
    fn get(&self) -> u32 {
        self.n
    }

    #[apm::span]
    fn incr(&mut self) {
        self.n += 1;
    }

    #[apm::span]
    fn into_n(self) -> u32 {
        self.n
    }

    #[apm::span]
    fn bumped(mut self) -> Self {
        self.n += 10;
        self
    }

    #[apm::span]
    fn boxed(self: Box<Self>) -> u32 {
        self.n
    }

    #[apm::span]
    fn rc(self: Rc<Self>) -> u32 {
        self.n
    }

    #[apm::span]
    fn pinned(self: Pin<&mut Self>) -> u32 {
        self.n
    }

    // Same receivers, through the `Result` closure.
    #[apm::span]
    fn try_get(&self) -> Result<u32, String> {
        if self.n == 0 {
            return Err("zero".into());
        }
        Ok(self.n)
    }

    #[apm::span]
    fn try_name(&self) -> Result<&str, String> {
        Ok(&self.name)
    }

    #[apm::span]
    fn try_incr(&mut self) -> Result<u32, String> {
        self.n = self.n.checked_add(1).ok_or("overflow")?;
        Ok(self.n)
    }

    // A reborrow of `&mut self` returned out of the closure: needs an `FnOnce` closure.
    #[apm::span]
    fn try_name_mut(&mut self) -> Result<&mut String, String> {
        if self.name.is_empty() {
            return Err("no name".into());
        }
        Ok(&mut self.name)
    }

    #[apm::span]
    fn try_field(&mut self) -> Result<&mut u32, String> {
        let n = &mut self.n;
        Ok(n)
    }

    #[apm::span]
    fn try_into_name(self) -> Result<String, String> {
        Ok(self.name)
    }

    #[apm::span]
    fn try_bumped(mut self) -> Result<Self, String> {
        self.n += 10;
        Ok(self)
    }

    #[apm::span]
    fn try_boxed(self: Box<Self>) -> Result<u32, String> {
        Ok(self.n)
    }

    #[apm::span]
    fn try_arc(self: Arc<Self>) -> Result<String, String> {
        Ok(self.name.clone())
    }

    #[apm::span]
    fn try_pinned(self: Pin<&mut Self>) -> Result<u32, String> {
        let this = self.get_mut();
        this.n += 1;
        Ok(this.n)
    }

    #[apm::span]
    fn assoc_result(n: u32) -> Result<Self, String> {
        Ok(Self::new(n))
    }
}

trait Store {
    fn key(&self) -> &str;

    #[apm::span]
    fn describe(&self) -> String {
        format!("store {}", self.key())
    }

    #[apm::span]
    fn lookup(&self, k: &str) -> Result<usize, String> {
        if k == self.key() {
            Ok(k.len())
        } else {
            Err(format!("missing {k}"))
        }
    }
}

struct Mem;

impl Store for Mem {
    #[apm::span]
    fn key(&self) -> &str {
        "mem"
    }
}

fn main() {
    let mut c = Counter::new(1);
    assert_eq!(c.get(), 1);
    c.incr();
    assert_eq!(c.get(), 2);
    assert_eq!(c.clone().into_n(), 2);
    assert_eq!(c.clone().bumped().n, 12);
    assert_eq!(Box::new(c.clone()).boxed(), 2);
    assert_eq!(Rc::new(c.clone()).rc(), 2);
    assert_eq!(Pin::new(&mut c).pinned(), 2);

    assert_eq!(c.try_get(), Ok(2));
    assert_eq!(Counter::new(0).try_get(), Err("zero".into()));
    assert_eq!(c.try_name(), Ok("c"));
    assert_eq!(c.try_incr(), Ok(3));
    c.try_name_mut().unwrap().push('!');
    assert_eq!(c.name, "c!");
    *c.try_field().unwrap() = 40;
    assert_eq!(c.n, 40);
    assert_eq!(c.clone().try_into_name(), Ok("c!".into()));
    assert_eq!(c.clone().try_bumped().map(|c| c.n), Ok(50));
    assert_eq!(Box::new(c.clone()).try_boxed(), Ok(40));
    assert_eq!(Arc::new(c.clone()).try_arc(), Ok("c!".into()));
    assert_eq!(Pin::new(&mut c).try_pinned(), Ok(41));
    assert_eq!(Counter::assoc_result(5).map(|c| c.n), Ok(5));

    assert_eq!(Mem.describe(), "store mem");
    assert_eq!(Mem.lookup("mem"), Ok(3));
    assert_eq!(Mem.lookup("x"), Err("missing x".into()));
}
