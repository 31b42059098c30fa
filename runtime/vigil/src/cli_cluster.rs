//! `vigil cluster status | move`: the cluster through a broker's admin API.

use clap::{Args, Subcommand};
use vigil_api::MoveRequest;

use crate::cli::{api, client, AdminArgs};
use crate::output::OutputArgs;

/// `vigil cluster` flags and subcommands.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Brokers, each partition's leader and epoch, movements in progress.
    Status {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move a partition to a broker: its leader uploads and hands it over
    /// (no data is copied).
    Move {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Node id of the broker that should lead it.
        #[arg(long)]
        to: i32,
    },
}

/// Runs a `vigil cluster` command.
pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let c = client(&args.admin.admin)?;
    match args.command {
        ClusterCommand::Status { output } => {
            let s = api(c.cluster())?;
            output.print(&s, || {
                println!(
                    "coordinator: {}   answered by node {}",
                    s.coordinator, s.node_id
                );
                if !s.nodes.is_empty() {
                    println!("{:<6} {:<24} ADMIN", "NODE", "KAFKA");
                    for n in &s.nodes {
                        println!("{:<6} {:<24} {}", n.node_id, n.kafka_listener, n.admin_addr);
                    }
                }
                println!(
                    "{:<32} {:>9} {:>6} {:>6}",
                    "TOPIC", "PARTITION", "LEADER", "EPOCH"
                );
                for p in &s.partitions {
                    let dash = |v: Option<i32>| v.map_or("-".to_string(), |v| v.to_string());
                    println!(
                        "{:<32} {:>9} {:>6} {:>6}",
                        p.topic,
                        p.partition,
                        dash(p.leader),
                        dash(p.epoch)
                    );
                }
                for m in &s.movements {
                    println!(
                        "moving {}/{}: {} -> {} ({})",
                        m.topic, m.partition, m.from, m.to, m.reason
                    );
                }
            })
        }
        ClusterCommand::Move {
            topic,
            partition,
            to,
        } => {
            let req = MoveRequest {
                topic,
                partition,
                to,
            };
            let r = api(c.move_partition(&req))?;
            println!(
                "{}/{}: move to node {} requested; its leader hands it over within a second",
                r.topic, r.partition, r.to
            );
            Ok(())
        }
    }
}
