//! A handler of one's own: tallies the bytes of every message body and the bodies that are not
//! UTF-8, stops at the tutorial's marker, and leaves offset tracking to the library.
//!
//! ```sh
//! cargo run -p producer && cargo run -p consumer --example custom_handler
//! ```

use std::process::ExitCode;

use consumer::{Delivery, Handled, Handler};
use shared::config::Settings;
use shared::runtime;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct ByteTally {
    bytes: u64,
    not_utf8: u64,
}

impl Handler for ByteTally {
    fn handle(&mut self, deliveries: &[Delivery]) -> shared::Result<Handled> {
        for (index, delivery) in deliveries.iter().enumerate() {
            let body = delivery.message().data().unwrap_or_default();
            self.bytes += body.len() as u64;
            self.not_utf8 += u64::from(std::str::from_utf8(body).is_err());
            if body.starts_with(b"marker") {
                // Everything up to and including the marker is processed; the run ends there.
                return Ok(Handled {
                    processed: index + 1,
                    stop: true,
                });
            }
        }
        Ok(Handled::all(deliveries.len()))
    }

    fn stopped(&mut self) {
        println!("{} bytes, {} bodies not UTF-8", self.bytes, self.not_utf8);
    }
}

fn main() -> ExitCode {
    shared::telemetry::init();
    let settings = match Settings::load(None) {
        Ok(settings) => settings,
        Err(err) => return runtime::fail(&err),
    };
    runtime::run(async move {
        // A real service would cancel this on SIGTERM (see the consumer binary).
        let shutdown = CancellationToken::new();
        // One handler per partition (a plain stream has one, with no partition name).
        let handlers = |_partition: Option<&str>| Ok(ByteTally::default());
        let report = consumer::run(&settings, handlers, false, shutdown).await?;
        for partition in &report.partitions {
            println!(
                "{}: stored offset {}",
                partition.stream,
                shared::offset_spec::show_offset(partition.outcome.stored_offset)
            );
        }
        Ok(())
    })
}
