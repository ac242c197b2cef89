//! The shape `#[async_trait]` generates (a non-`async` fn returning
//! `Pin<Box<dyn Future<Output = T> + Send + 'a>>` whose last expression is
//! `Box::pin(async move { .. })`), written by hand: the inner future is instrumented and the
//! boxed future stays `Send`. Also a fn returning `impl Future` from an `async` block.
#![deny(warnings)]

use std::future::Future;
use std::pin::Pin;

use apm_tests::block_on;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait Repo {
    fn get<'life0, 'async_trait>(
        &'life0 self,
        id: u32,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait;

    fn count<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = usize> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait;

    fn alias(&self) -> BoxFuture<'_, u8>;
}

struct Mem(Vec<String>);

impl Repo for Mem {
    // What async-trait 0.1 emits for `async fn get(&self, id: u32) -> Result<String, String>`.
    #[apm::span(kind = "db", subtype = "postgresql")]
    fn get<'life0, 'async_trait>(
        &'life0 self,
        id: u32,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            if let Some(__ret) = None::<Result<String, String>> {
                #[allow(unreachable_code)]
                return __ret;
            }
            let __self = self;
            let id = id;
            let __ret: Result<String, String> = {
                let item = __self.0.get(id as usize).ok_or(format!("no {id}"))?;
                Ok(item.clone())
            };
            #[allow(unreachable_code)]
            __ret
        })
    }

    #[apm::span]
    fn count<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = usize> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let n = self.0.len();
        ::std::boxed::Box::pin(async move { n })
    }

    // The `Output` is hidden behind an alias: instrumented without the outcome hook.
    #[apm::span]
    fn alias(&self) -> BoxFuture<'_, u8> {
        Box::pin(async move { self.0.len() as u8 })
    }
}

#[apm::span]
fn later(x: u32) -> impl Future<Output = Result<u32, String>> + Send {
    async move {
        if x == 0 {
            return Err("zero".to_owned());
        }
        Ok(x + 1)
    }
}

#[apm::span]
fn borrowed<'a>(s: &'a str) -> impl Future<Output = usize> + 'a {
    async move { s.len() }
}

// A non-`move` block (it captures nothing here).
#[apm::span]
fn not_move() -> impl Future<Output = Result<u8, ()>> {
    async { Ok(5) }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

fn main() {
    let repo = Mem(vec!["a".into()]);
    assert_eq!(block_on(assert_send(repo.get(0))), Ok("a".to_owned()));
    assert_eq!(block_on(repo.get(3)), Err("no 3".to_owned()));
    assert_eq!(block_on(assert_send(repo.count())), 1);
    assert_eq!(block_on(repo.alias()), 1);
    let dyn_repo: &dyn Repo = &repo;
    assert_eq!(block_on(dyn_repo.count()), 1);
    assert_eq!(block_on(assert_send(later(1))), Ok(2));
    assert_eq!(block_on(later(0)), Err("zero".to_owned()));
    assert_eq!(block_on(borrowed("abc")), 3);
    assert_eq!(block_on(not_move()), Ok(5));
}
