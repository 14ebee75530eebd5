//! The `"servers"` of `/init` and `/add`: server names mapped to shard ids, with the seed's
//! placeholder names (`Server$`, `Server[5]`) resolved to fresh ones.

use std::collections::BTreeSet;

use serde_json::Value as Json;
use walshard_contract::{Ident, RequestError};

use super::fields::{ident, invalid};
use crate::layout::Placement;

/// `"servers"` of `/init` and `/add`: server names mapped to shard ids. A name may be the seed's
/// placeholder (`"Server$"`, `"Server[5]"`): a fresh name is generated ([`resolve_name`]).
pub(super) fn placement(v: &Json, existing: &Placement) -> Result<Placement, RequestError> {
    let map = v
        .as_object()
        .ok_or_else(|| invalid("\"servers\" must map server names to lists of shard ids"))?;
    let mut named = Vec::with_capacity(map.len());
    for (server, held) in map {
        let list = held
            .as_array()
            .ok_or_else(|| invalid(format!("servers.{server} must be a list of shard ids")))?;
        let shards = list
            .iter()
            .map(|s| ident("shard id", s))
            .collect::<Result<Vec<_>, _>>()?;
        named.push((server.as_str(), shards));
    }
    let mut taken: BTreeSet<String> = existing.keys().map(|s| s.to_string()).collect();
    taken.extend(
        named
            .iter()
            .filter(|(n, _)| placeholder(n).is_none())
            .map(|(n, _)| (*n).to_owned()),
    );
    let mut out = Placement::new();
    for (raw, shards) in named {
        let name = match placeholder(raw) {
            Some((prefix, wanted)) => {
                let name = resolve_name(prefix, wanted, &taken)?;
                taken.insert(name.to_string());
                name
            }
            None => Ident::new(raw).map_err(|e| invalid(format!("server name: {e}")))?,
        };
        out.insert(name, shards);
    }
    Ok(out)
}

/// The seed's placeholder server names: `Prefix$` (any number) and `Prefix[N]` (`N` if free).
fn placeholder(name: &str) -> Option<(&str, Option<u64>)> {
    if let Some(prefix) = name.strip_suffix('$') {
        return Some((prefix, None));
    }
    let (prefix, rest) = name.strip_suffix(']')?.split_once('[')?;
    if rest.is_empty() {
        return Some((prefix, None));
    }
    rest.parse().ok().map(|n| (prefix, Some(n)))
}

/// A fresh server name `Prefix<n>`: `wanted` if that name is free, else one above the highest
/// number any `Prefix<digits>` name already uses.
fn resolve_name(
    prefix: &str,
    wanted: Option<u64>,
    taken: &BTreeSet<String>,
) -> Result<Ident, RequestError> {
    let make = |n: u64| {
        Ident::new(&format!("{prefix}{n}"))
            .map_err(|e| invalid(format!("server name placeholder {prefix:?}: {e}")))
    };
    if let Some(n) = wanted.filter(|n| !taken.contains(&format!("{prefix}{n}"))) {
        return make(n);
    }
    let highest = taken
        .iter()
        .filter_map(|t| t.strip_prefix(prefix)?.parse::<u64>().ok())
        .max();
    make(highest.map_or(0, |h| h.saturating_add(1)))
}
