//! The options after `--`: `--duration SECS` (10), `--concurrency N` (64),
//! `--postgres-url URL`, `--skip-scale`, `--out FILE` (`target/load.md`).

use std::time::Duration;

use crate::BoxError;

#[derive(Clone)]
pub struct Options {
    pub duration: Duration,
    pub concurrency: usize,
    /// An admin URL: the PostgreSQL scenarios run in a fresh database made
    /// there and dropped after.
    pub postgres_url: Option<String>,
    pub skip_scale: bool,
    pub out: String,
}

impl Options {
    pub fn parse() -> Result<Self, BoxError> {
        let mut options = Self {
            duration: Duration::from_secs(10),
            concurrency: 64,
            postgres_url: None,
            skip_scale: false,
            out: "target/load.md".to_owned(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--duration" => options.duration = Duration::from_secs(value()?.parse()?),
                "--concurrency" => options.concurrency = value()?.parse()?,
                "--postgres-url" => options.postgres_url = Some(value()?),
                "--out" => options.out = value()?,
                "--skip-scale" => options.skip_scale = true,
                "--bench" => {} // cargo bench passes it
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        Ok(options)
    }
}
