//! What the operator's controllers watch: every namespace, or the ones it was given.

use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::{Client, Resource};

/// One scope per watched namespace; `[None]` (the whole cluster) when none is given.
pub fn scopes(namespaces: &[String]) -> Vec<Option<&str>> {
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    }
}

/// The API of kind `K` in `namespace`, or in every namespace.
pub fn api<K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>>(
    client: &Client,
    namespace: Option<&str>,
) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_namespace_means_the_whole_cluster() {
        assert_eq!(scopes(&[]), vec![None]);
        let given = ["a".to_owned(), "b".to_owned()];
        assert_eq!(scopes(&given), vec![Some("a"), Some("b")]);
    }
}
