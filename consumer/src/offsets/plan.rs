//! What a move of a stored offset means for one consumer on one stream — the offset it lands on
//! and the messages the next run replays or skips — worked out (and refused if impossible)
//! before anything is changed, for `offsets set` and `offsets import`.

use shared::error::{Error, Result};
use shared::OffsetSpec;

use super::admin::Admin;
use super::target::{Move, Target};

/// How long to wait for the broker to deliver from a timestamp before calling the stream empty
/// from there.
const TIMESTAMP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The new position of one consumer on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Store this offset: the next run starts right after it.
    Offset(u64),
    /// SQLite store: remove the offset, so the next run starts at `consumer.offset` (`first`).
    Forget,
}

/// One planned change.
pub(super) struct Plan {
    pub(super) name: String,
    pub(super) stream: String,
    pub(super) before: Option<u64>,
    pub(super) after: After,
    /// What the move does to the next run, in words ("replays 50 messages").
    pub(super) effect: String,
}

/// Plans `movement` for `name` on `stream`; an impossible one is a usage error (exit 2).
pub(super) async fn plan(admin: &Admin, name: &str, stream: &str, movement: Move) -> Result<Plan> {
    let scanner = admin.scanner();
    let before = admin.stored(name, stream).await?;
    let last = scanner.last(stream).await?.ok_or_else(|| {
        Error::Usage(format!(
            "stream '{stream}' is empty: there is no offset to move to"
        ))
    })?;
    let first = scanner.first(stream).await?.map_or(0, |seen| seen.offset);
    let before_first = || before_first(admin, name, stream, first);
    let after = match movement {
        Move::To(Target::Offset(n)) if n > last.offset => {
            return Err(Error::Usage(format!(
                "offset {n} is past the end of stream '{stream}' (its last offset is {})",
                last.offset
            )))
        }
        Move::To(Target::Offset(n)) => After::Offset(n),
        Move::To(Target::Last) => After::Offset(last.offset),
        Move::To(Target::First) => before_first()?,
        Move::To(Target::Timestamp(ms)) => {
            let at = admin
                .reader()
                .delivered_offset(stream, OffsetSpec::Timestamp(ms), false, TIMESTAMP_WAIT)
                .await?
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "no message at or after that time in '{stream}': nothing to move to"
                    ))
                })?;
            match at.checked_sub(1) {
                Some(offset) => After::Offset(offset),
                None => before_first()?,
            }
        }
        Move::Shift(n) => {
            let stored = before.ok_or_else(|| {
                Error::Usage(format!(
                    "nothing is stored for consumer '{name}' on '{stream}': --shift-by moves a \
                     stored offset; use --to"
                ))
            })?;
            if n > 0 {
                match scanner.forward(stream, stored, n.unsigned_abs()).await? {
                    Some((offset, _)) => After::Offset(offset),
                    None => After::Offset(stored),
                }
            } else {
                match scanner
                    .backward(stream, stored, n.unsigned_abs(), first)
                    .await?
                {
                    (Some(offset), _) => After::Offset(offset),
                    (None, _) if first > 0 => After::Offset(first - 1),
                    (None, behind) => before_first().map_err(|_| {
                        Error::Usage(format!(
                            "--shift-by {n}: only {behind} messages of '{stream}' are at or \
                             before the stored offset {stored}, from offset 0 on, and RabbitMQ \
                             cannot store an offset before 0: use --shift-by -{} (replays all \
                             but the first), or run the consumer once with --replay --offset \
                             first",
                            behind.saturating_sub(1)
                        ))
                    })?,
                }
            }
        }
    };
    let effect = effect(admin, stream, before, after, first).await?;
    Ok(Plan {
        name: name.to_owned(),
        stream: stream.to_owned(),
        before,
        after,
        effect,
    })
}

/// "Before the stream's first message": the offset before it, or — when it is at 0, below which
/// no store can hold an offset — with the SQLite store and `consumer.offset = "first"`, no offset
/// at all; otherwise refused, saying what does it.
fn before_first(admin: &Admin, name: &str, stream: &str, first: u64) -> Result<After> {
    if let Some(offset) = first.checked_sub(1) {
        return Ok(After::Offset(offset));
    }
    if admin.uses_sqlite() && admin.settings.consumer.offset == OffsetSpec::First {
        return Ok(After::Forget);
    }
    let how = if admin.uses_sqlite() {
        "with the SQLite store this works when consumer.offset = \"first\" (the offset is removed); \
         or run"
    } else {
        "run"
    };
    Err(Error::Usage(format!(
        "the first message of '{stream}' is at offset 0, and RabbitMQ cannot store an offset \
         before 0: {how} the consumer once with --replay --offset first (`--name {name}`), which \
         ignores the stored offset and re-reads from the start"
    )))
}

/// What moving from `before` to `after` does to the next run.
async fn effect(
    admin: &Admin,
    stream: &str,
    before: Option<u64>,
    after: After,
    first: u64,
) -> Result<String> {
    let Some(before) = before else {
        return Ok("nothing was stored".into());
    };
    let scanner = admin.scanner();
    let (replays, count) = match after {
        After::Offset(after) if after == before => return Ok("no change".into()),
        After::Offset(after) if after < before => {
            (true, scanner.count(stream, after, before).await?)
        }
        After::Offset(after) => (false, scanner.count(stream, before, after).await?),
        After::Forget => {
            let mut count = scanner.count(stream, first, before).await?;
            if first <= before {
                count.messages += 1;
            }
            (true, count)
        }
    };
    let bound = if count.complete { "" } else { "at least " };
    let verb = if replays { "replays" } else { "skips" };
    let plural = if count.messages == 1 { "" } else { "s" };
    Ok(format!("{verb} {bound}{} message{plural}", count.messages))
}
