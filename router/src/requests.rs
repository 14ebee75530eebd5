//! Pure parsing and validation of the seed load balancer's requests (design.md §4). A request that
//! fails here changes nothing. Writes are validated whole and grouped per shard; reads are planned
//! per shard; `/init`, `/add` and `/rm` produce the next [`Layout`](crate::layout::Layout).
//!
//! By request: [`parse_init`], [`parse_add`] and [`parse_rm`] (`membership`, with the placement
//! of `"servers"` and placeholder names in `names`, the answers' wording in `answers`),
//! [`parse_read`] (`read`), [`parse_write`], [`parse_update`] and [`parse_delete`] (`write`);
//! the field checks they share are in `fields`.

mod answers;
mod fields;
mod membership;
mod names;
mod read;
mod write;

pub use answers::{add_answer, add_message, init_answer, join_names, rm_answer};
pub use membership::{check_reinit, parse_add, parse_init, parse_rm};
pub use read::{Consistency, consistency, parse_read};
pub use walshard_contract::RequestError;
pub use write::{WritePlan, parse_delete, parse_update, parse_write};

#[cfg(test)]
mod tests;
