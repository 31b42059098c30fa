use vigil_sdk::prelude::*;

struct D;

#[vigil_sdk::detector]
impl Detector for D {
    type Config = ();

    fn new(_config: ()) -> Result<Self> {
        Ok(D)
    }

    fn process(&mut self, batch: Batch, alerts: &mut Alerts) -> Result<()> {
        let _ = (batch, alerts);
        Ok(())
    }
}

fn main() {}
