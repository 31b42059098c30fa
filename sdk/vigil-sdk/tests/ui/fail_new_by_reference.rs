use vigil_sdk::prelude::*;

struct D;

#[vigil_sdk::detector]
impl Detector for D {
    type Config = ();

    fn new(config: &Self::Config) -> Result<Self> {
        let _ = config;
        Ok(D)
    }

    fn process(&mut self, _batch: &Batch, _alerts: &mut Alerts) -> Result<()> {
        Ok(())
    }
}

fn main() {}
