//! The Markdown table the benchmark prints and writes.

use std::fmt::Write as _;
use std::time::Duration;

use crate::drive::Run;

pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

#[derive(Default)]
pub struct Report {
    pub rows: String,
    pub checks: String,
    /// Sections of their own, after the tables (Markdown).
    pub sections: String,
}

impl Report {
    pub fn row(&mut self, scenario: &str, backend: &str, run: &Run, expected: &[&str]) {
        let unexpected = run.unexpected(expected);
        let flag = if unexpected > 0 {
            format!(" **{unexpected} UNEXPECTED**")
        } else {
            String::new()
        };
        let _ = writeln!(
            self.rows,
            "| {scenario} | {backend} | {:.0} | {} | {} | {} | {}{flag} |",
            run.rate(),
            ms(run.quantile(0.5)),
            ms(run.quantile(0.99)),
            ms(run.max()),
            run.outcomes_text()
        );
    }

    pub fn check(&mut self, target: &str, measured: String, met: bool) {
        let verdict = if met { "met" } else { "**MISSED**" };
        let _ = writeln!(self.checks, "| {target} | {measured} | {verdict} |");
    }

    /// The whole report: `summary`, the table of rows, the table of
    /// targets, the sections.
    pub fn text(&self, summary: &str) -> String {
        let mut text = summary.to_owned();
        let _ = writeln!(
            text,
            "| scenario | backend | rps | p50 | p99 | max | answers |"
        );
        let _ = writeln!(text, "|---|---|---|---|---|---|---|");
        text.push_str(&self.rows);
        let _ = writeln!(text, "\n| target | measured | |\n|---|---|---|");
        text.push_str(&self.checks);
        text.push_str(&self.sections);
        text
    }

    /// Prints the whole report and writes it to `out`.
    pub fn publish(&self, summary: &str, out: &str) -> std::io::Result<()> {
        let text = self.text(summary);
        println!("{text}");
        if let Some(parent) = std::path::Path::new(out).parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, &text)?;
        eprintln!("written to {out}");
        Ok(())
    }
}
