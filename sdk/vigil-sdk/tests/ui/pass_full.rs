use vigil_sdk::prelude::*;

#[derive(serde::Deserialize)]
struct Config {
    limit: usize,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Counter {
    limit: usize,
    seen: usize,
}

#[vigil_sdk::detector]
impl Detector for Counter {
    type Config = Config;

    fn new(config: Self::Config) -> Result<Self> {
        Ok(Counter { limit: config.limit, seen: 0 })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        for &offset in batch.offsets() {
            self.seen += 1;
            if self.seen > self.limit {
                alerts.push(Alert::new(offset).message("over the limit"));
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>>> {
        Some(vigil_sdk::state::to_bytes(self))
    }

    fn restore(&mut self, state: &[u8]) -> Option<Result<()>> {
        Some(vigil_sdk::state::from_bytes(state).map(|s| *self = s))
    }
}

fn main() {}
