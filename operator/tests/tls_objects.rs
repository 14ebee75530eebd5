//! `spec.tls` in the desired objects: the generated Secret (only without a `secretName`), the
//! agents served over HTTPS with their probes, the router trusting the authority, and nothing of
//! it without `spec.tls`. The generated authority really signs a certificate for the agents'
//! names (checked by a client that trusts only it, in `walshard-contract`'s TLS tests).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use walshard_contract::tls::authority::Authority;
use walshard_k8s_api::spec::{ShardedDatabase, TlsSpec};
use walshard_operator::k8s::objects::{
    GeneratedSecrets, GeneratedTls, Images, certificate_names, desired,
};

const SEED_DEFAULT: &str = include_str!("../../examples/seed-default.yaml");

fn db(tls: Option<TlsSpec>) -> ShardedDatabase {
    let mut db = ShardedDatabase::from_yaml(SEED_DEFAULT).expect("example parses");
    db.metadata.namespace = Some("shop".to_owned());
    db.metadata.uid = Some("5d0c3f5e-9a51-4e1b-8c1e-000000000002".to_owned());
    db.spec.tls = tls;
    db
}

fn generated_tls() -> GeneratedTls {
    let ca = Authority::generate("test CA").expect("authority");
    let served = ca
        .issue("test", &certificate_names("studt", "shop"))
        .expect("issue");
    GeneratedTls {
        ca: ca.pem().cert.clone(),
        cert: served.cert,
        key: served.key,
    }
}

fn generated(tls: Option<GeneratedTls>) -> GeneratedSecrets {
    GeneratedSecrets {
        cluster_token: "t".to_owned(),
        mysql_password: "p".to_owned(),
        router_admin_token: "a".to_owned(),
        tls,
    }
}

fn images() -> Images {
    Images {
        agent: "walshard/agent:test".to_owned(),
        router: "walshard/router:test".to_owned(),
        pull_policy: None,
    }
}

fn env_of(container: &Json) -> BTreeMap<String, Json> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_owned(),
                e["value"].clone(),
            )
        })
        .collect()
}

fn container<'a>(pod: &'a Json, name: &str) -> &'a Json {
    pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .expect("container")
}

#[test]
fn generated_tls_mounts_the_secret_serves_https_and_the_router_trusts_it() {
    let tls = generated_tls();
    let d = desired(
        &db(Some(TlsSpec::default())),
        &images(),
        &generated(Some(tls.clone())),
    )
    .expect("desired");
    let secret = d.tls_secret.as_ref().expect("the generated TLS Secret");
    assert_eq!(secret.metadata.name.as_deref(), Some("studt-tls"));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.as_ref().expect("data");
    assert_eq!(data["ca.crt"].0, tls.ca.as_bytes());
    assert_eq!(data["tls.crt"].0, tls.cert.as_bytes());
    assert_eq!(data["tls.key"].0, tls.key.as_bytes());
    assert!(secret.metadata.owner_references.is_some());

    for sts in &d.stateful_sets {
        let pod = serde_json::to_value(&sts.spec.template.spec).expect("json");
        let volume = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "tls")
            .expect("tls volume");
        assert_eq!(volume["secret"]["secretName"], "studt-tls");
        assert_eq!(volume["secret"]["defaultMode"], 0o440);
        let agent = container(&pod, "agent");
        let env = env_of(agent);
        assert_eq!(env["WALSHARD_TLS_CERT"], "/etc/walshard/tls/tls.crt");
        assert_eq!(env["WALSHARD_TLS_KEY"], "/etc/walshard/tls/tls.key");
        assert_eq!(env["WALSHARD_TLS_CA"], "/etc/walshard/tls/ca.crt");
        assert!(
            agent["volumeMounts"].as_array().expect("mounts").contains(
                &json!({"name": "tls", "mountPath": "/etc/walshard/tls", "readOnly": true})
            )
        );
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(agent[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
        }
        // MySQL does not see the Secret.
        assert!(!env_of(container(&pod, "mysql")).contains_key("WALSHARD_TLS_KEY"));
    }
    let router = &d.deployments[0];
    let pod = serde_json::to_value(&router.spec.template.spec).expect("json");
    let env = env_of(container(&pod, "router"));
    assert_eq!(env["WALSHARD_TLS_CA"], "/etc/walshard/tls/ca.crt");
    assert!(
        !env.contains_key("WALSHARD_TLS_CERT"),
        "the seed API stays plain HTTP"
    );
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "studt-tls");
}

#[test]
fn a_users_secret_is_mounted_and_nothing_is_generated() {
    let spec = TlsSpec {
        secret_name: Some("studt-cert-manager".to_owned()),
    };
    let d = desired(
        &db(Some(spec)),
        &images(),
        &generated(Some(generated_tls())),
    )
    .expect("desired");
    assert!(d.tls_secret.is_none());
    let pod = serde_json::to_value(&d.stateful_sets[0].spec.template.spec).expect("json");
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume");
    assert_eq!(volume["secret"]["secretName"], "studt-cert-manager");
}

#[test]
fn without_spec_tls_nothing_changes() {
    let d = desired(&db(None), &images(), &generated(None)).expect("desired");
    assert!(d.tls_secret.is_none());
    let pod = serde_json::to_value(&d.stateful_sets[0].spec.template.spec).expect("json");
    let agent = container(&pod, "agent");
    assert!(!env_of(agent).contains_key("WALSHARD_TLS_CA"));
    assert!(agent["readinessProbe"]["httpGet"]["scheme"].is_null());
    assert!(
        !pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["name"] == "tls")
    );
}

#[test]
fn the_generated_certificate_names_cover_every_server_pod_and_the_router() {
    let names = certificate_names("studt", "shop");
    assert!(names.contains(&"*.studt-servers.shop.svc".to_owned()));
    assert!(names.contains(&"studt-router.shop.svc".to_owned()));
    let url = walshard_k8s_api::names::agent_url("studt", "shop", "Server0");
    let host = url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .expect("host");
    // A wildcard covers exactly one label: the pod's name.
    let (pod, rest) = host.split_once('.').expect("a dotted host");
    assert!(
        !pod.is_empty() && names.contains(&format!("*.{rest}")),
        "{host}"
    );
}
