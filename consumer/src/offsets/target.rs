//! Where `offsets set` moves a consumer: `--to first|last|<offset>|timestamp:<RFC 3339>`, or
//! `--shift-by ±N` messages from the stored offset.

use shared::OffsetSpec;

/// Where `offsets set --to` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Before the stream's first message: the next run re-reads everything still in the stream.
    First,
    /// This offset.
    Offset(u64),
    /// The stream's last message: skip the backlog.
    Last,
    /// The offset before the first message the broker delivers for this time (epoch ms).
    Timestamp(i64),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.parse::<OffsetSpec>() {
            Ok(OffsetSpec::First) => Ok(Target::First),
            Ok(OffsetSpec::Offset(n)) => Ok(Target::Offset(n)),
            Ok(OffsetSpec::Last) => Ok(Target::Last),
            Ok(OffsetSpec::Timestamp(ms)) => Ok(Target::Timestamp(ms)),
            _ => Err(format!(
                "`{text}` is not a target: expected first, last, an offset, or \
                 timestamp:<RFC 3339>"
            )),
        }
    }
}

/// A move relative to the stored offset, in messages (`--shift-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift(pub i64);

impl std::str::FromStr for Shift {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let n: i64 = text.trim().parse().map_err(|_| {
            format!("`{text}` is not a number of messages: expected e.g. -100 or +100")
        })?;
        if n == 0 {
            return Err("--shift-by 0 changes nothing".into());
        }
        Ok(Shift(n))
    }
}

/// What `offsets set` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// `--to`
    To(Target),
    /// `--shift-by`
    Shift(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("17".parse(), Ok(Target::Offset(17)));
        assert_eq!("last".parse(), Ok(Target::Last));
        assert_eq!("first".parse(), Ok(Target::First));
        assert_eq!(
            "timestamp:1970-01-01T00:00:01Z".parse(),
            Ok(Target::Timestamp(1000))
        );
        assert!("next".parse::<Target>().is_err());
        assert!("soon".parse::<Target>().is_err());
    }

    #[test]
    fn shifts_parse_with_a_sign_and_refuse_zero() {
        assert_eq!("-5".parse(), Ok(Shift(-5)));
        assert_eq!("+5".parse(), Ok(Shift(5)));
        assert_eq!("5".parse(), Ok(Shift(5)));
        assert!("0".parse::<Shift>().is_err());
        assert!("many".parse::<Shift>().is_err());
    }
}
