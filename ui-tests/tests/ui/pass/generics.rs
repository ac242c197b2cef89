//! Generics, `where` clauses, lifetimes, const generics, `impl Trait` in argument and return
//! position, argument patterns.
#![deny(warnings)]

use std::fmt::{Debug, Display};

#[apm::span]
fn largest<T: PartialOrd + Copy>(items: &[T]) -> Option<T> {
    let mut it = items.iter().copied();
    let first = it.next()?;
    Some(it.fold(first, |a, b| if b > a { b } else { a }))
}

#[apm::span]
fn describe<T, U>(t: T, u: U) -> String
where
    T: Display,
    U: Debug + Clone,
{
    format!("{t} {:?}", u.clone())
}

#[apm::span]
fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> &'a str {
    if a.len() >= b.len() {
        a
    } else {
        b
    }
}

#[apm::span]
fn first_word(s: &str) -> &str {
    s.split(' ').next().unwrap_or_default()
}

#[apm::span]
fn sum_array<const N: usize>(a: [u32; N]) -> u32 {
    a.iter().sum()
}

#[apm::span]
fn count(items: impl IntoIterator<Item = u8>) -> usize {
    items.into_iter().count()
}

#[apm::span]
fn evens(limit: u32) -> impl Iterator<Item = u32> + Clone {
    (0..limit).filter(|x| x % 2 == 0)
}

#[apm::span]
fn borrowing_iter<'a>(v: &'a [u8]) -> impl Iterator<Item = &'a u8> + 'a {
    v.iter().rev()
}

#[apm::span]
fn fallible_generic<T: std::str::FromStr>(s: &str) -> Result<T, T::Err>
where
    T::Err: Debug,
{
    let v = s.parse::<T>()?;
    Ok(v)
}

#[apm::span]
fn fallible_impl(items: impl IntoIterator<Item = u8>) -> Result<impl Iterator<Item = u8>, ()> {
    Ok(items.into_iter().map(|x| x + 1))
}

#[apm::span]
fn dyn_return(big: bool) -> Box<dyn Display> {
    if big {
        return Box::new(1000);
    }
    Box::new("small")
}

struct Point {
    x: i32,
    y: i32,
}

#[apm::span]
fn patterns((a, b): (i32, i32), Point { x, y }: Point, mut acc: i32, _: ()) -> i32 {
    acc += a + b + x + y;
    acc
}

#[apm::span]
fn patterns_result([first, ..]: [u8; 3], &r: &u8, mut n: u8) -> Result<u8, ()> {
    n += first + r;
    Ok(n)
}

struct Wrapper<T>(Vec<T>);

impl<T: Clone> Wrapper<T> {
    // A `static` in a generic context is fine as long as it does not mention `T`.
    #[apm::span]
    fn get(&self, i: usize) -> Result<&T, usize> {
        self.0.get(i).ok_or(i)
    }

    #[apm::span]
    fn map<U, F: FnMut(T) -> U>(self, f: F) -> Wrapper<U> {
        Wrapper(self.0.into_iter().map(f).collect())
    }
}

fn main() {
    let w = Wrapper(vec![1, 2]);
    assert_eq!(w.get(1), Ok(&2));
    assert_eq!(w.get(5), Err(5));
    assert_eq!(w.map(|x| x * 10).0, [10, 20]);
    assert_eq!(largest(&[1, 5, 3]), Some(5));
    assert_eq!(largest::<u8>(&[]), None);
    assert_eq!(describe(1, "x"), "1 \"x\"");
    assert_eq!(longest("ab", "c"), "ab");
    assert_eq!(first_word("hello world"), "hello");
    assert_eq!(sum_array([1, 2, 3]), 6);
    assert_eq!(count(vec![1, 2]), 2);
    assert_eq!(evens(5).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(borrowing_iter(&[1, 2]).copied().collect::<Vec<_>>(), [2, 1]);
    assert_eq!(fallible_generic::<u8>("7"), Ok(7));
    assert!(fallible_generic::<u8>("x").is_err());
    assert_eq!(fallible_impl([1]).unwrap().collect::<Vec<_>>(), [2]);
    assert_eq!(dyn_return(true).to_string(), "1000");
    assert_eq!(dyn_return(false).to_string(), "small");
    assert_eq!(patterns((1, 2), Point { x: 3, y: 4 }, 10, ()), 20);
    assert_eq!(patterns_result([1, 2, 3], &2, 3), Ok(6));
}
