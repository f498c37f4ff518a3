//! The deadline a gRPC client set (`grpc-timeout`), for work that should
//! be refused at once rather than finish after the client gave up.

use std::time::Duration;

use tonic::Request;

/// How long the client will wait, from its `grpc-timeout` header: at most
/// eight digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC
/// wire protocol defines it. `None` without one, or with a malformed one
/// (tonic itself refuses those before a handler runs).
pub fn of<T>(request: &Request<T>) -> Option<Duration> {
    parse(request.metadata().get("grpc-timeout")?.to_str().ok()?)
}

fn parse(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn reads_the_wire_format() {
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "5", "5s", "123456789S", "-5S", "5 S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
