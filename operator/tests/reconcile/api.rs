//! A scripted API server (kube-rs' tower-test pattern): the test awaits each request the
//! reconciler sends, asserts it, and answers it.

use std::collections::BTreeMap;

use http::{Request, Response};
use kube::client::Body;
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::{Value as Json, json};
use walshard_operator::k8s::objects::Desired;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

pub const FIELD_MANAGER: &str = "walshard-operator";

/// The far end of a mocked [`Client`].
pub struct ApiServer {
    handle: Handle,
    namespace: String,
}

/// One request, answered with [`Exchange::reply`].
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Json,
    respond: Responder,
}

pub fn mocked(namespace: &str) -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        Client::new(service, namespace),
        ApiServer {
            handle,
            namespace: namespace.to_owned(),
        },
    )
}

impl ApiServer {
    /// The next request; it must be `method` on `path`.
    pub async fn expect(&mut self, method: &str, path: &str) -> Exchange {
        let (request, respond) = self
            .handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("expected {method} {path}, the client is gone"));
        let (parts, body) = request.into_parts();
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), decode(v))
            })
            .collect();
        let bytes = body.collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON request body")
        };
        let exchange = Exchange {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
            respond,
        };
        assert_eq!(
            (exchange.method.as_str(), exchange.path.as_str()),
            (method, path),
            "unexpected request (body {})",
            exchange.body
        );
        exchange
    }

    /// A server-side apply of `path` with the one field manager, forced.
    pub async fn expect_apply(&mut self, path: &str) -> Exchange {
        let e = self.expect("PATCH", path).await;
        assert_eq!(
            e.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{path}: server-side apply"
        );
        assert_eq!(
            e.query.get("fieldManager").map(String::as_str),
            Some(FIELD_MANAGER)
        );
        assert_eq!(
            e.query.get("force").map(String::as_str),
            Some("true"),
            "{path}"
        );
        e
    }

    /// An Event about the database; returns (type, reason, action, note).
    pub async fn expect_event(&mut self) -> (String, String, String, String) {
        let path = format!(
            "/apis/events.k8s.io/v1/namespaces/{}/events",
            self.namespace
        );
        let e = self.expect("POST", &path).await;
        let body = e.body.clone();
        e.reply(201, body.clone());
        let field = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
        (
            field("type"),
            field("reason"),
            field("action"),
            field("note"),
        )
    }

    /// Path of a namespaced object of kind `K`.
    pub fn path_of<K: Resource<DynamicType = ()>>(&self, name: &str) -> String {
        format!("{}/{name}", K::url_path(&(), Some(&self.namespace)))
    }

    /// Path of the collection of kind `K`.
    pub fn collection<K: Resource<DynamicType = ()>>(&self) -> String {
        K::url_path(&(), Some(&self.namespace))
    }

    /// No request is waiting (the reconciler sent nothing more).
    pub fn assert_idle(&mut self) {
        if let std::task::Poll::Ready(Some((request, _))) = self.handle.poll_request() {
            panic!("unexpected {} {}", request.method(), request.uri());
        }
    }
}

impl Exchange {
    pub fn reply(self, status: u16, body: Json) {
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string().into_bytes()))
            .expect("a response");
        self.respond.send_response(response);
    }

    /// 200 with the request's own body (what an apply or a patch returns, near enough).
    pub fn echo(self) {
        let body = self.body.clone();
        self.reply(200, body);
    }

    pub fn not_found(self) {
        let body = status(404, "NotFound");
        self.reply(404, body);
    }
}

pub fn status(code: u16, reason: &str) -> Json {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": if code < 300 {"Success"} else {"Failure"}, "reason": reason, "code": code})
}

pub fn list(kind: &str, api_version: &str, items: Vec<Json>) -> Json {
    json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Every object the reconciler applies, in its order: (path, body).
pub fn applies(api: &ApiServer, d: &Desired) -> Vec<(String, Json)> {
    fn push<K: Resource<DynamicType = ()> + Serialize>(
        api: &ApiServer,
        out: &mut Vec<(String, Json)>,
        objects: &[K],
    ) {
        for o in objects {
            let name = o.meta().name.clone().unwrap_or_default();
            let json = serde_json::to_value(o).expect("serializes");
            out.push((api.path_of::<K>(&name), json));
        }
    }
    let mut out = Vec::new();
    push(api, &mut out, &d.service_accounts);
    push(api, &mut out, &d.roles);
    push(api, &mut out, &d.role_bindings);
    push(api, &mut out, &d.config_maps);
    push(api, &mut out, &d.services);
    push(api, &mut out, &d.stateful_sets);
    push(api, &mut out, &d.deployments);
    push(api, &mut out, &d.pdbs);
    out
}

/// Percent-decodes a query value.
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
