//! Pure parsing and validation of the seed load balancer's requests (design.md §4). A request that
//! fails here changes nothing. Writes are validated whole and grouped per shard; reads are planned
//! per shard; `/init`, `/add` and `/rm` produce the next [`Layout`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
pub use walshard_contract::RequestError;
use walshard_contract::body::{self, field};
use walshard_contract::row::json_kind;
use walshard_contract::{
    Ident, KeyRange, OnDuplicate, Patch, Row, STATUS_SUCCESS, STATUS_SUCCESSFUL, Schema, ShardSpec,
};

use crate::layout::{Layout, LayoutError, Placement};

impl From<LayoutError> for RequestError {
    fn from(e: LayoutError) -> Self {
        RequestError::Invalid(e.to_string())
    }
}

fn invalid(msg: impl Into<String>) -> RequestError {
    RequestError::Invalid(msg.into())
}

fn count(body: &Json, name: &str) -> Result<usize, RequestError> {
    let v = field(body, name)?;
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(format!("{name:?} must be a non-negative integer, got {v}")))
}

fn ident(what: &str, v: &Json) -> Result<Ident, RequestError> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(format!("{what} must be a string, got {}", json_kind(v))))?;
    Ident::new(s).map_err(|e| invalid(format!("{what}: {e}")))
}

fn shard_specs(key: &str, v: &Json, name: &str) -> Result<Vec<ShardSpec>, RequestError> {
    let list = v
        .as_array()
        .ok_or_else(|| invalid(format!("{name:?} must be an array of shards")))?;
    list.iter()
        .map(|s| ShardSpec::from_json(key, s).map_err(|e| invalid(format!("{name}: {e}"))))
        .collect()
}

/// `"servers"` of `/init` and `/add`: server names mapped to shard ids. A name may be the seed's
/// placeholder (`"Server$"`, `"Server[5]"`): a fresh name is generated ([`resolve_name`]).
fn placement(v: &Json, existing: &Placement) -> Result<Placement, RequestError> {
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

/// The seed's wording for added servers: `Add Server:4 and Server:5`.
pub fn add_message(added: &[Ident]) -> String {
    let labels: Vec<String> = added
        .iter()
        .map(|s| {
            let name = s.as_str();
            let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                format!("{}:{digits}", &name[..name.len() - digits.len()])
            } else {
                name.to_owned()
            }
        })
        .collect();
    format!("Add {}", labels.join(" and "))
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

/// The seed's `/init` answer.
pub fn init_answer() -> Json {
    serde_json::json!({"message": "Configured Database", "status": STATUS_SUCCESS})
}

/// The seed's `/add` answer: `{"N": 5, "message": "Add Server:4 and Server:5", "status": "successful"}`.
pub fn add_answer(layout: &Layout, added: &[Ident]) -> Json {
    serde_json::json!({
        "N": layout.placement.len(),
        "message": add_message(added),
        "status": STATUS_SUCCESSFUL,
    })
}

/// The seed's `/rm` answer: `{"message": {"N": 3, "servers": ["Server4"]}, "status": "successful"}`.
pub fn rm_answer(layout: &Layout, removed: &[Ident]) -> Json {
    serde_json::json!({
        "message": {"N": layout.placement.len(), "servers": removed},
        "status": STATUS_SUCCESSFUL,
    })
}

/// `Server1, Server4`.
pub fn join_names(names: &[Ident]) -> String {
    names
        .iter()
        .map(Ident::as_str)
        .collect::<Vec<_>>()
        .join(", ")
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

/// How a read may be served (docs/consistency.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Any replica, committed data only: may be stale, never wrong.
    Eventual,
    /// The default: the client's own acknowledged writes and nothing older than what it (or
    /// this router) already saw; any replica that has applied far enough.
    #[default]
    Session,
    /// Linearizable: through the shard's primary after a read-index round.
    Strong,
}

/// `"consistency": "eventual" | "session" | "strong"`, `session` when absent.
pub fn consistency(v: Option<&Json>) -> Result<Consistency, RequestError> {
    match v.and_then(Json::as_str) {
        None if v.is_none() => Ok(Consistency::default()),
        Some("eventual") => Ok(Consistency::Eventual),
        Some("session") => Ok(Consistency::Session),
        Some("strong") => Ok(Consistency::Strong),
        _ => Err(invalid(format!(
            "\"consistency\" must be \"eventual\", \"session\" or \"strong\", got {}",
            v.map_or_else(String::new, Json::to_string)
        ))),
    }
}

/// `/read`: `{"Stud_id": {"low": 1000, "high": 8889}}`, optionally `"consistency"`.
/// The bounds may be strings or integral floats; `low > high` reads nothing.
pub fn parse_read(layout: &Layout, body: &Json) -> Result<(KeyRange, Consistency), RequestError> {
    let range = body::range_field(&layout.schema, body)?;
    Ok((range, consistency(body.get("consistency"))?))
}

/// A validated `/write`: rows grouped per shard in request order, and what to do with stored keys.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePlan {
    /// Per shard, its rows in request order; only shards that get at least one row.
    pub groups: BTreeMap<Ident, Vec<Row>>,
    /// What to do with a row whose key is already stored (`"on_duplicate"`, `skip` when
    /// absent).
    pub on_duplicate: OnDuplicate,
}

/// `/write`: `{"data": [rows]}`, validated whole (types coerced, every key in some shard, no key
/// twice), then grouped per shard. `"data": []` is a valid write of nothing.
pub fn parse_write(layout: &Layout, body: &Json) -> Result<WritePlan, RequestError> {
    let key = layout.schema.key().as_str();
    let rows = body::rows_field(&layout.schema, body)?;
    let on_duplicate = body::on_duplicate(body)?;
    let mut groups: BTreeMap<Ident, Vec<Row>> = BTreeMap::new();
    let mut outside = Vec::new();
    for row in rows {
        match layout.shard_for(row.key()) {
            Some(s) => groups.entry(s.id.clone()).or_default().push(row),
            None => outside.push(row.key()),
        }
    }
    if !outside.is_empty() {
        let list: Vec<String> = outside.iter().map(i64::to_string).collect();
        return Err(invalid(format!(
            "{key} {} outside every shard; nothing was written",
            list.join(", ")
        )));
    }
    Ok(WritePlan {
        groups,
        on_duplicate,
    })
}

/// The shard of a single key, or 400 naming it.
fn shard_of(layout: &Layout, key: i64) -> Result<Ident, RequestError> {
    layout.shard_for(key).map(|s| s.id.clone()).ok_or_else(|| {
        invalid(format!(
            "{}:{key} is outside every shard",
            layout.schema.key()
        ))
    })
}

/// `/update`: `{"Stud_id": 2255, "data": {...}}`: `data` is the whole row or only the columns to
/// change, with or without the key (which cannot change).
pub fn parse_update(layout: &Layout, body: &Json) -> Result<(Ident, i64, Patch), RequestError> {
    let key = body::key_field(&layout.schema, body)?;
    let patch = body::patch_field(&layout.schema, key, body)?;
    Ok((shard_of(layout, key)?, key, patch))
}

/// `/del`: `{"Stud_id": 2255}`.
pub fn parse_delete(layout: &Layout, body: &Json) -> Result<(Ident, i64), RequestError> {
    let key = body::key_field(&layout.schema, body)?;
    Ok((shard_of(layout, key)?, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::{id, seed_layout};
    use serde_json::json;

    fn student(id: i64) -> Json {
        json!({"Stud_id": id, "Stud_name": "x", "Stud_marks": 1})
    }

    #[test]
    fn init_accepts_the_seed_example_and_checks_n() {
        let body = json!({
            "N": 3,
            "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]},
            "shards": [
                {"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096},
                {"Stud_id_low": 4096, "Shard_id": "sh2", "Shard_size": 4096},
                {"Stud_id_low": 8192, "Shard_id": "sh3", "Shard_size": 4096}
            ],
            "servers": {"Server0": ["sh1", "sh2"], "Server1": ["sh2", "sh3"], "Server2": ["sh1", "sh3"]}
        });
        let l = parse_init(&body).expect("valid");
        assert_eq!(l.placement.len(), 3);
        let mut wrong_n = body.clone();
        wrong_n["N"] = json!(4);
        assert!(
            matches!(parse_init(&wrong_n), Err(RequestError::Invalid(m)) if m.contains("N is 4 but 3"))
        );
        let mut overlap = body.clone();
        overlap["shards"][1]["Stud_id_low"] = json!(100);
        assert!(parse_init(&overlap).is_err());
        let mut unknown = body;
        unknown["servers"]["Server2"] = json!(["sh9"]);
        assert!(parse_init(&unknown).is_err());
    }

    #[test]
    fn add_checks_n_names_and_shards() {
        let l = seed_layout();
        let body = json!({"n": 2, "new_shards": [{"Stud_id_low": 16384, "Shard_id": "sh5", "Shard_size": 4096}],
                          "servers": {"Server6": ["sh5", "sh1"], "Server7": ["sh5"]}});
        let (next, added) = parse_add(&l, &body).expect("valid");
        assert_eq!(next.placement.len(), 8);
        assert_eq!(next.shard_for(20000).map(|s| s.id.as_str()), Some("sh5"));
        assert_eq!(add_message(&added), "Add Server:6 and Server:7");
        let mut too_many = body.clone();
        too_many["n"] = json!(3);
        assert!(
            matches!(parse_add(&l, &too_many), Err(RequestError::Invalid(m)) if m.contains("only 2"))
        );
        let existing = json!({"n": 1, "servers": {"Server0": ["sh1"]}});
        assert!(matches!(
            parse_add(&l, &existing),
            Err(RequestError::Conflict(_))
        ));
        let unknown = json!({"n": 1, "servers": {"Server9": ["sh7"]}});
        assert!(parse_add(&l, &unknown).is_err());
    }

    #[test]
    fn rm_removes_named_then_chooses_safely() {
        let l = seed_layout();
        let (next, removed) =
            parse_rm(&l, &json!({"n": 2, "servers": ["Server4"]})).expect("valid");
        assert_eq!(removed[0], id("Server4"));
        assert_eq!(removed.len(), 2);
        assert_eq!(next.placement.len(), 4);
        assert!(matches!(
            parse_rm(&l, &json!({"n": 1, "servers": ["Server4", "Server5"]})),
            Err(RequestError::Invalid(_))
        ));
        assert!(matches!(
            parse_rm(&l, &json!({"n": 1, "servers": ["Server9"]})),
            Err(RequestError::NotFound(_))
        ));
        assert!(parse_rm(&l, &json!({"n": 6})).is_err());
        // Removing every holder of sh1 is refused.
        let r = parse_rm(
            &l,
            &json!({"n": 3, "servers": ["Server0", "Server2", "Server4"]}),
        );
        assert!(matches!(r, Err(RequestError::Invalid(m)) if m.contains("sh1 without a replica")));
    }

    #[test]
    fn writes_are_validated_whole_and_grouped() {
        let l = seed_layout();
        let plan = parse_write(
            &l,
            &json!({"data": [student(1), student(5000), student(2), student(9000)]}),
        )
        .expect("valid");
        let shape: Vec<(&str, Vec<i64>)> = plan
            .groups
            .iter()
            .map(|(s, rows)| (s.as_str(), rows.iter().map(Row::key).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                ("sh1", vec![1, 2]),
                ("sh2", vec![5000]),
                ("sh3", vec![9000])
            ]
        );
        assert_eq!(plan.on_duplicate, OnDuplicate::Skip);
        assert!(
            matches!(parse_write(&l, &json!({"data": [student(1), student(99_999)]})), Err(RequestError::Invalid(m)) if m.contains("99999 outside every shard"))
        );
        assert!(
            matches!(parse_write(&l, &json!({"data": [student(3), student(3)]})), Err(RequestError::Conflict(m)) if m.contains("Stud_id: 3"))
        );
        // The seed's clients: keys as strings, marks as numbers; an empty batch.
        let seedish = parse_write(
            &l,
            &json!({"data": [{"Stud_id": "1", "Stud_name": "x", "Stud_marks": 27}], "on_duplicate": "error"}),
        )
        .expect("coerced");
        assert_eq!(seedish.on_duplicate, OnDuplicate::Error);
        assert!(parse_write(&l, &json!({"data": []})).is_ok_and(|p| p.groups.is_empty()));
        assert!(
            parse_write(
                &l,
                &json!({"data": [{"Stud_id": "1x", "Stud_name": "x", "Stud_marks": 1}]})
            )
            .is_err()
        );
    }

    #[test]
    fn placeholder_server_names_are_generated() {
        let l = seed_layout();
        let body = json!({"n": 3, "new_shards": [],
                          "servers": {"Server$": ["sh1"], "Server[5]": ["sh2"], "Server[20]": ["sh3"]}});
        let (next, added) = parse_add(&l, &body).expect("valid");
        let names: Vec<&str> = added.iter().map(Ident::as_str).collect();
        // Server5 is taken in the seed layout: then one above the highest number in use.
        assert_eq!(names, ["Server20", "Server6", "Server7"]);
        assert_eq!(next.placement.len(), 9);
        let init = json!({
            "N": 2,
            "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]},
            "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}],
            "servers": {"Server[0]": ["sh1"], "Server$": ["sh1"]}
        });
        let a = parse_init(&init).expect("valid");
        assert_eq!(parse_init(&init).expect("again"), a, "deterministic");
        let names: Vec<&str> = a.placement.keys().map(Ident::as_str).collect();
        assert_eq!(names, ["Server0", "Server1"]);
        let bad = json!({"n": 1, "servers": {"Bad-Name$": ["sh1"]}});
        assert!(parse_add(&l, &bad).is_err());
    }

    #[test]
    fn reads_updates_and_deletes() {
        let l = seed_layout();
        let (r, c) =
            parse_read(&l, &json!({"Stud_id": {"low": 1000, "high": 8889}})).expect("valid");
        assert_eq!((r.low, r.high, c), (1000, 8889, Consistency::Session));
        let (_, c) = parse_read(
            &l,
            &json!({"Stud_id": {"low": 1, "high": 2}, "consistency": "strong"}),
        )
        .expect("valid");
        assert_eq!(c, Consistency::Strong);
        let (r, _) =
            parse_read(&l, &json!({"Stud_id": {"low": "2", "high": 1.0}})).expect("empty range");
        assert!(r.is_empty());
        assert!(
            parse_read(
                &l,
                &json!({"Stud_id": {"low": 1, "high": 2}, "consistency": "sometimes"})
            )
            .is_err()
        );
        let (shard, key, _) =
            parse_update(&l, &json!({"Stud_id": 2255, "data": student(2255)})).expect("valid");
        assert_eq!((shard.as_str(), key), ("sh1", 2255));
        assert!(parse_update(&l, &json!({"Stud_id": 2255, "data": student(2256)})).is_err());
        let (_, key, patch) =
            parse_update(&l, &json!({"Stud_id": "1102", "data": {"Stud_marks": 30}}))
                .expect("the seed's screenshot: a string key, a partial row");
        assert_eq!((key, patch.cells.len()), (1102, 1));
        assert_eq!(
            parse_delete(&l, &json!({"Stud_id": 4096})).map(|(s, k)| (s.to_string(), k)),
            Ok(("sh2".into(), 4096))
        );
        assert_eq!(
            parse_delete(&l, &json!({"Stud_id": "4096"})).map(|(_, k)| k),
            Ok(4096)
        );
        assert!(parse_delete(&l, &json!({"Stud_id": -5})).is_err());
    }
}
