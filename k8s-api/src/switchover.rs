//! The switchover request of the API: the annotation `walshard.io/switchover: "sh1=Server2"`
//! (several comma-separated) on a `ShardedDatabase`, and the same text for `walshard switchover`.

/// The annotation a user sets to request a switchover.
pub const SWITCHOVER_ANNOTATION: &str = "walshard.io/switchover";

/// `"sh1=Server2, sh3=Server0"` → `[("sh1", "Server2"), ("sh3", "Server0")]`.
pub fn parse_switchover(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (shard, to) = part
            .split_once('=')
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| format!("{part:?} is not shard=Server"))?;
        if out.iter().any(|(s, _)| s == shard) {
            return Err(format!("shard {shard:?} is named twice"));
        }
        out.push((shard.to_owned(), to.to_owned()));
    }
    if out.is_empty() {
        return Err("empty: expected shard=Server, e.g. sh1=Server2".to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs() {
        let p = parse_switchover(" sh1=Server2, sh3 = Server0 ").unwrap();
        assert_eq!(
            p,
            vec![
                ("sh1".to_owned(), "Server2".to_owned()),
                ("sh3".to_owned(), "Server0".to_owned())
            ]
        );
        assert!(parse_switchover("sh1").is_err());
        assert!(parse_switchover("sh1=").is_err());
        assert!(parse_switchover("").is_err());
        assert!(parse_switchover("sh1=A,sh1=B").is_err());
    }
}
