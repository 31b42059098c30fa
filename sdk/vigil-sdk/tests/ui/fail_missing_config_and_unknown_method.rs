use vigil_sdk::prelude::*;

struct D;

#[vigil_sdk::detector]
impl Detector for D {
    fn new(_config: Self::Config) -> Result<Self> {
        Ok(D)
    }

    fn process(&mut self, _batch: &Batch, _alerts: &mut Alerts) -> Result<()> {
        Ok(())
    }

    fn helper(&self) -> u32 {
        1
    }
}

fn main() {}
