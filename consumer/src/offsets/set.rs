//! `offsets set` (and the last step of `import`): refuses while a consumer of a planned name is
//! connected (the management API says; `--force` skips it), then stores each plan — or, with
//! `--dry-run`, only prints it — as before -> after with the messages the next run replays or
//! skips.

use futures::{StreamExt, TryStreamExt};
use shared::error::{Error, Result};
use shared::offset_spec::show_offset;

use super::active::Connected;
use super::admin::Admin;
use super::plan::{plan, After, Plan};
use super::scan::READ_AT_ONCE;
use super::target::{Move, Target};

/// `offsets set`: `movement` for every name on every stream.
pub(super) async fn set(
    admin: &Admin,
    names: &[String],
    movement: Move,
    dry_run: bool,
    force: bool,
) -> Result<()> {
    if admin.partitioned {
        if let Move::To(Target::Offset(n)) = movement {
            return Err(Error::Usage(format!(
                "--to {n}: offsets are per partition; on a super stream use --to first|last, \
                 --to timestamp:<RFC 3339> or --shift-by"
            )));
        }
    }
    let pairs = names
        .iter()
        .flat_map(|name| admin.streams.iter().map(move |stream| (name, stream)));
    let plans: Vec<Plan> = futures::stream::iter(pairs)
        .map(|(name, stream)| plan(admin, name, stream, movement))
        .buffered(READ_AT_ONCE)
        .try_collect()
        .await?;
    check_and_apply(admin, &plans, dry_run, force).await
}

/// Refuses while a consumer of a planned name is connected (unless `--force`), then applies.
/// A dry run only warns: it changes nothing anyway.
pub(super) async fn check_and_apply(
    admin: &Admin,
    plans: &[Plan],
    dry_run: bool,
    force: bool,
) -> Result<()> {
    if !force {
        let checked = Connected::ask(&admin.settings.broker)
            .await
            .and_then(|connected| refuse_if_connected(plans, Some(&connected)));
        match checked {
            Err(err) if dry_run => tracing::warn!("without --dry-run this would fail: {err}"),
            Err(err) => return Err(err),
            Ok(()) => {}
        }
    }
    apply(admin, plans, dry_run).await
}

/// Refuses (exit 2, nothing changed) if a consumer of a planned name is connected to its
/// stream; `connected` is `None` with `--force`.
fn refuse_if_connected(plans: &[Plan], connected: Option<&Connected>) -> Result<()> {
    let Some(connected) = connected else {
        return Ok(());
    };
    let busy: Vec<String> = plans
        .iter()
        .filter_map(|plan| {
            let connections = connected.of(&plan.name, &plan.stream);
            (!connections.is_empty()).then(|| {
                let known: Vec<&str> = connections.into_iter().filter(|c| !c.is_empty()).collect();
                let from = if known.is_empty() {
                    String::new()
                } else {
                    format!(" (connection {})", known.join(", "))
                };
                format!("'{}' on '{}'{from}", plan.name, plan.stream)
            })
        })
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "a consumer of that name is connected: {}; it would go on from where it is and store over \
         the new offset. Stop it first (or --force); nothing was changed",
        busy.join("; ")
    )))
}

/// Prints each plan; unless `dry_run`, carries it out first.
async fn apply(admin: &Admin, plans: &[Plan], dry_run: bool) -> Result<()> {
    let next = |after: After| match after {
        After::Offset(offset) => (offset + 1).to_string(),
        After::Forget => format!(
            "the configured position (consumer.offset = {})",
            admin.settings.consumer.offset
        ),
    };
    for plan in plans {
        let before = show_offset(plan.before);
        let shown_after = match plan.after {
            After::Offset(offset) => offset.to_string(),
            After::Forget => "none".into(),
        };
        if dry_run {
            let _ = shared::outln!(
                "dry run: consumer '{}' on '{}' {}: {before} -> {shown_after}, the next run \
                 would start at {}: {}",
                plan.name,
                plan.stream,
                admin.kept_in(),
                next(plan.after),
                plan.effect
            );
            continue;
        }
        match plan.after {
            After::Offset(offset) => {
                admin.store(&plan.name, &plan.stream, offset).await?;
                let _ = shared::outln!(
                    "stored offset {offset} for consumer '{}' on stream '{}' {}: the next run \
                     starts at {} (was {before}: {})",
                    plan.name,
                    plan.stream,
                    admin.kept_in(),
                    offset + 1,
                    plan.effect
                );
            }
            After::Forget => {
                admin.forget(&plan.name, &plan.stream)?;
                let _ = shared::outln!(
                    "removed the offset of consumer '{}' on stream '{}' {}: the next run starts \
                     at {} (was {before}: {}); the broker's copy is unchanged",
                    plan.name,
                    plan.stream,
                    admin.kept_in(),
                    next(plan.after),
                    plan.effect
                );
            }
        }
    }
    if dry_run {
        let _ = shared::outln!("dry run: nothing was changed");
    }
    Ok(())
}
