//! The parallel processing stage: an [`crate::AsyncHandler`] run on many deliveries at once,
//! with offsets that cover only finished work.
//!
//! - `stage`: the stage's task and the consumer actor's handle on it.
//! - `window`: the finished prefix (pure logic).
//! - `keys`: one delivery at a time per key (pure logic).
//! - `key`: where a message's key comes from (`processing.key`).
//! - `contain`: a handler's panic becomes the run's error, not the process's end.

mod contain;
mod key;
mod keys;
mod stage;
mod window;

pub use contain::panic_is_contained;
pub(crate) use stage::{Stage, StageEvent};
