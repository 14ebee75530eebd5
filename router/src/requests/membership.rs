//! `/init`, `/add` and `/rm`: each produces the next [`Layout`] from the current one, or refuses
//! the request and changes nothing.

use std::collections::BTreeSet;

use serde_json::Value as Json;
use walshard_contract::body::field;
use walshard_contract::row::json_kind;
use walshard_contract::{Ident, RequestError, Schema};

use super::answers::join_names;
use super::fields::{count, ident, invalid, shard_specs};
use super::names::placement;
use crate::layout::{Layout, Placement};

/// `/init`: `{"N": 3, "schema": {...}, "shards": [...], "servers": {"Server0": ["sh1"], ...}}`.
/// `N` must equal the number of servers named.
pub fn parse_init(body: &Json) -> Result<Layout, RequestError> {
    let schema: Schema = serde_json::from_value(field(body, "schema")?.clone())
        .map_err(|e| invalid(format!("schema: {e}")))?;
    let shards = shard_specs(schema.key().as_str(), field(body, "shards")?, "shards")?;
    let servers = placement(field(body, "servers")?, &Placement::new())?;
    let n = count(body, "N")?;
    if n != servers.len() {
        return Err(invalid(format!(
            "N is {n} but {} servers are named in \"servers\"",
            servers.len()
        )));
    }
    if n == 0 {
        return Err(invalid("at least one server is needed"));
    }
    Ok(Layout::new(schema, shards, servers)?)
}

/// `/add`: `{"n": 2, "new_shards": [...], "servers": {"Server4": ["sh3", "sh5"], ...}}` against the
/// current layout. Returns the new layout and the added servers. `n` must equal the number of
/// servers named; they must be new; shards they hold must exist or be among `new_shards`.
pub fn parse_add(current: &Layout, body: &Json) -> Result<(Layout, Vec<Ident>), RequestError> {
    let key = current.schema.key().as_str();
    let new_shards = match body.get("new_shards") {
        Some(v) => shard_specs(key, v, "new_shards")?,
        None => Vec::new(),
    };
    let servers = placement(field(body, "servers")?, &current.placement)?;
    let n = count(body, "n")?;
    if n > servers.len() {
        return Err(invalid(format!(
            "n is {n} but only {} new servers are named in \"servers\"",
            servers.len()
        )));
    }
    if n < servers.len() {
        return Err(invalid(format!(
            "n is {n} but {} new servers are named in \"servers\"",
            servers.len()
        )));
    }
    if n == 0 {
        return Err(invalid("n must be at least 1"));
    }
    if let Some(existing) = servers.keys().find(|s| current.placement.contains_key(*s)) {
        return Err(RequestError::Conflict(format!(
            "server {existing} already exists"
        )));
    }
    let mut shards = current.shards().to_vec();
    shards.extend(new_shards);
    let mut placement = current.placement.clone();
    let added: Vec<Ident> = servers.keys().cloned().collect();
    placement.extend(servers);
    Ok((
        Layout::new(current.schema.clone(), shards, placement)?,
        added,
    ))
}

/// `/rm`: `{"n": 2, "servers": ["Server4"]}`: removes the named servers and chooses the rest
/// (highest names first) among those whose loss leaves every shard with a replica. Returns the
/// new layout and the removed servers, named ones first.
pub fn parse_rm(current: &Layout, body: &Json) -> Result<(Layout, Vec<Ident>), RequestError> {
    let n = count(body, "n")?;
    let named = match body.get("servers") {
        Some(Json::Array(list)) => list
            .iter()
            .map(|s| ident("server name", s))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(invalid(format!(
                "\"servers\" must be a list of server names, got {}",
                json_kind(other)
            )));
        }
        None => Vec::new(),
    };
    if named.len() > n {
        return Err(invalid(format!(
            "{} servers are named but n is {n}",
            named.len()
        )));
    }
    if n == 0 {
        return Err(invalid("n must be at least 1"));
    }
    if n >= current.placement.len() {
        return Err(invalid(format!(
            "cannot remove {n} of {} servers: at least one must stay",
            current.placement.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for s in &named {
        if !current.placement.contains_key(s) {
            return Err(RequestError::NotFound(format!("no server named {s}")));
        }
        if !seen.insert(s) {
            return Err(invalid(format!("server {s} is named twice")));
        }
    }
    let mut placement = current.placement.clone();
    for s in &named {
        placement.remove(s);
    }
    if let Some(orphan) = orphaned_shard(current, &placement) {
        return Err(invalid(format!(
            "removing {} would leave shard {orphan} without a replica",
            join_names(&named)
        )));
    }
    let mut removed = named;
    let candidates: Vec<Ident> = placement.keys().rev().cloned().collect();
    for c in candidates {
        if removed.len() == n {
            break;
        }
        let held = placement.remove(&c).unwrap_or_default();
        if orphaned_shard(current, &placement).is_some() {
            placement.insert(c, held);
        } else {
            removed.push(c);
        }
    }
    if removed.len() < n {
        return Err(invalid(format!(
            "cannot remove {n} servers without leaving a shard without a replica"
        )));
    }
    let layout = Layout::new(current.schema.clone(), current.shards().to_vec(), placement)?;
    Ok((layout, removed))
}

/// `/init` of a database configured already: the same layout again is fine (idempotent),
/// another one is a 409 (change it with `/add` and `/rm`).
pub fn check_reinit(current: &Layout, wanted: &Layout) -> Result<(), RequestError> {
    if current == wanted {
        return Ok(());
    }
    Err(RequestError::Conflict(
        "the database is already configured with another layout; change it with /add and /rm"
            .into(),
    ))
}

/// A shard of `layout` that no server of `placement` holds.
fn orphaned_shard(layout: &Layout, placement: &Placement) -> Option<Ident> {
    let held: BTreeSet<&Ident> = placement.values().flatten().collect();
    layout
        .shards()
        .iter()
        .find(|s| !held.contains(&s.id))
        .map(|s| s.id.clone())
}
