trait Repo {
    #[apm::span]
    fn get(&self, id: u32) -> Option<String>;
}

fn main() {}
