//! The seed's answers to `/init`, `/add` and `/rm`, and its wording for server lists.

use serde_json::Value as Json;
use walshard_contract::{Ident, STATUS_SUCCESS, STATUS_SUCCESSFUL};

use crate::layout::Layout;

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
