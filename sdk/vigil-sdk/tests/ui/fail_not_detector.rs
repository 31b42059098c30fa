struct Plain;

#[vigil_sdk::detector]
impl Plain {
    fn new() -> Self {
        Plain
    }
}

fn main() {}
