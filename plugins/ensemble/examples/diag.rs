use vigil_nab::{probation_rows, Dataset};
use vigil_plugin_ensemble::config::Config;
use vigil_plugin_ensemble::model::SeriesModel;
fn main() {
    let data = std::env::var("NAB_DATA").unwrap();
    let filt = std::env::args().nth(1).unwrap_or_default();
    let d = Dataset::load(std::path::Path::new(&data)).unwrap();
    let cfg = Config::default();
    for f in &d.files {
        if !f.name.contains(&filt) { continue; }
        let mut m = SeriesModel::new(&cfg);
        let w = f.window_rows();
        println!("{} len {} prob {} windows {:?}", f.name, f.len(), probation_rows(f.len()), w);
        for (i, &v) in f.values.iter().enumerate() {
            let o = m.update(&cfg, v);
            if o.alert {
                let inw = w.iter().any(|&(a, b)| i >= a && i <= b);
                println!("  {i:6} {} {:?} score {:.3} z {:.1} novel {} v {v} exp {:.3}", if inw {"TP"} else {"fp"}, o.kind, o.score, o.z, o.novel, o.expected);
            }
        }
    }
}
