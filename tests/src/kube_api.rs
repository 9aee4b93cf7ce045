//! A mock Kubernetes API server for controller tests: a `kube::Client` whose
//! requests a small in-memory object store answers, as the real API server
//! would for what the operator does (get, list by label, create, replace with
//! resourceVersion checks, merge / apply / JSON patches, delete with
//! finalizers), recording every request for the test to inspect. There is no
//! Kubernetes API server on this machine; the real-cluster check is
//! `make e2e-kind`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

/// One request the client made.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

#[derive(Default)]
struct State {
    /// Objects by their path, e.g. `/api/v1/namespaces/ns/pods/p1`.
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    version: u64,
    /// Path prefixes of APIs this server does not serve (a CRD not
    /// installed): every request under one is answered 404.
    unserved: Vec<String>,
}

pub struct MockKube {
    pub client: kube::Client,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockKube {
    pub fn start() -> MockKube {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let recorded = Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (status, answer) = {
                    let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
                    state.requests.push(recorded.clone());
                    state.answer(&recorded)
                };
                let mut response =
                    Response::new(Body::from(serde_json::to_vec(&answer).unwrap_or_default()));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                respond.send_response(response);
            }
        });
        MockKube {
            client: kube::Client::new(service, "default"),
            state,
            server,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stores an object as if someone had created it.
    pub fn put(&self, path: &str, object: Value) {
        self.with(|s| {
            let object = s.stamp(object);
            s.objects.insert(path.to_string(), object);
        });
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.with(|s| s.objects.get(path).cloned())
    }

    /// Marks an object deleted, as `kubectl delete` does.
    /// The objects of a collection, as a list would give them.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        self.with(|s| s.list(collection, ""))["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn delete(&self, path: &str) {
        self.with(|s| {
            s.delete(path);
        });
    }

    /// Serves no API under `prefix` (`/apis/group/version/`), as a
    /// cluster without that CRD installed.
    pub fn unserve(&self, prefix: &str) {
        self.with(|s| s.unserved.push(prefix.to_string()));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": reason, "message": message, "code": code.as_u16(),
        }),
    )
}

impl State {
    /// Gives an object a new resourceVersion (and a uid and creation time
    /// on first store).
    fn stamp(&mut self, mut object: Value) -> Value {
        self.version += 1;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(self.version.to_string());
        if meta.get("uid").is_none_or(Value::is_null) {
            meta["uid"] = json!(format!("uid-{}", self.version));
        }
        if meta.get("creationTimestamp").is_none_or(Value::is_null) {
            meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        object
    }

    /// Deletes, or with finalizers only marks deleted; a marked object goes
    /// once its last finalizer is removed.
    fn delete(&mut self, path: &str) -> Option<Value> {
        let object = self.objects.get_mut(path)?;
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
            Some(object.clone())
        } else {
            self.objects.remove(path)
        }
    }

    fn answer(&mut self, request: &Recorded) -> (StatusCode, Value) {
        if self.unserved.iter().any(|p| request.path.starts_with(p)) {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        // `/status` writes go to the object itself.
        let path = request
            .path
            .strip_suffix("/status")
            .unwrap_or(&request.path)
            .to_string();
        match request.method.as_str() {
            "GET" => match self.objects.get(&path) {
                Some(object) => (StatusCode::OK, object.clone()),
                None if request.query.contains("watch=") => status(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    "no watches here",
                ),
                None if path_depth_is_collection(&path) => {
                    (StatusCode::OK, self.list(&path, &request.query))
                }
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{path} not found"),
                ),
            },
            "POST" => {
                let name = request.body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default();
                let key = format!("{path}/{name}");
                if self.objects.contains_key(&key) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{key} already exists"),
                    );
                }
                let object = self.stamp(request.body.clone());
                self.objects.insert(key, object.clone());
                (StatusCode::CREATED, object)
            }
            "PUT" => {
                let Some(stored) = self.objects.get(&path) else {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{path} not found"),
                    );
                };
                if stored["metadata"]["resourceVersion"]
                    != request.body["metadata"]["resourceVersion"]
                {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified",
                    );
                }
                let object = self.stamp(request.body.clone());
                self.objects.insert(path, object.clone());
                (StatusCode::OK, object)
            }
            "PATCH" => self.patch(&path, request),
            "DELETE" => match self.delete(&path) {
                Some(object) => (StatusCode::OK, object),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{path} not found"),
                ),
            },
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "unsupported",
            ),
        }
    }

    fn patch(&mut self, path: &str, request: &Recorded) -> (StatusCode, Value) {
        let apply = request.content_type.starts_with("application/apply-patch");
        let mut object = match self.objects.get(path) {
            Some(object) => object.clone(),
            // Server-side apply creates what is missing.
            None if apply => json!({}),
            None => {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{path} not found"),
                );
            }
        };
        if request.content_type.starts_with("application/json-patch") {
            for op in request.body.as_array().into_iter().flatten() {
                if let Err(why) = json_patch_op(&mut object, op) {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &why);
                }
            }
        } else {
            merge(&mut object, &request.body);
        }
        let object = self.stamp(object);
        let gone = object["metadata"]["deletionTimestamp"].is_string()
            && object["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        if gone {
            self.objects.remove(path);
        } else {
            self.objects.insert(path.to_string(), object.clone());
        }
        (StatusCode::OK, object)
    }

    fn list(&self, collection: &str, query: &str) -> Value {
        let selector: Vec<(String, String)> = query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("labelSelector="))
            .flat_map(|s| {
                percent_decode(s)
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let prefix = format!("{collection}/");
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.contains('/'))
            })
            .map(|(_, object)| object)
            .filter(|object| {
                selector
                    .iter()
                    .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v))
            })
            .cloned()
            .collect();
        json!({
            "apiVersion": "v1", "kind": "List",
            "metadata": {"resourceVersion": self.version.to_string()},
            "items": items,
        })
    }
}

/// `/api/v1/namespaces/ns/pods` and `/apis/g/v/namespaces/ns/things` are
/// collections; one more segment names an object.
fn path_depth_is_collection(path: &str) -> bool {
    let segments = path.trim_matches('/').split('/').count();
    if path.starts_with("/api/") {
        segments == 5 || segments == 3
    } else {
        segments == 6 || segments == 4
    }
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in patch {
        if value.is_null() {
            if let Value::Object(map) = target {
                map.remove(key);
            }
        } else {
            merge(&mut target[key], value);
        }
    }
}

/// The RFC 6902 operations kube's finalizer helper sends: test, add, remove.
fn json_patch_op(object: &mut Value, op: &Value) -> Result<(), String> {
    let path = op["path"].as_str().unwrap_or_default();
    let (parent_path, last) = path.rsplit_once('/').ok_or("bad path")?;
    match op["op"].as_str() {
        Some("test") => {
            let found = object.pointer(path).cloned().unwrap_or(Value::Null);
            if found == op["value"] {
                Ok(())
            } else {
                Err(format!("test of {path} failed: {found} != {}", op["value"]))
            }
        }
        Some("add") => {
            let parent = object.pointer_mut(parent_path).ok_or("no parent")?;
            match parent {
                Value::Array(items) if last == "-" => items.push(op["value"].clone()),
                Value::Array(items) => {
                    let at: usize = last.parse().map_err(|_| "bad index")?;
                    items.insert(at.min(items.len()), op["value"].clone());
                }
                Value::Object(map) => {
                    map.insert(last.to_string(), op["value"].clone());
                }
                _ => return Err("parent is not a container".into()),
            }
            Ok(())
        }
        Some("remove") => {
            let parent = object.pointer_mut(parent_path).ok_or("no parent")?;
            match parent {
                Value::Array(items) => {
                    let at: usize = last.parse().map_err(|_| "bad index")?;
                    if at >= items.len() {
                        return Err("index out of range".into());
                    }
                    items.remove(at);
                }
                Value::Object(map) => {
                    map.remove(last).ok_or("no such member")?;
                }
                _ => return Err("parent is not a container".into()),
            }
            Ok(())
        }
        other => Err(format!("unsupported op {other:?}")),
    }
}

/// A `Task` resource in namespace team-a, as `kubectl apply` would store it.
pub fn task_resource(name: &str, uid: &str, steps: Value, ttl: Option<u32>) -> Value {
    let mut spec = json!({"steps": steps});
    if let Some(ttl) = ttl {
        spec["ttlSecondsAfterFinished"] = json!(ttl);
    }
    json!({
        "apiVersion": "tidewright.dev/v1alpha1", "kind": "Task",
        "metadata": {"name": name, "namespace": "team-a", "uid": uid, "generation": 1},
        "spec": spec,
    })
}

/// A shell step of a `Task` resource.
pub fn sh(id: &str, deps: &[&str], script: &str) -> Value {
    json!({"id": id, "dependsOn": deps, "shell": {"command": ["sh", "-c", script]}})
}

/// The operator's context: `mock` as its Kubernetes API, `server` as its
/// control plane (with the server's admin token).
pub fn operator_context(
    server: &crate::Server,
    mock: &MockKube,
) -> Arc<tidewright_operator::Context> {
    let control_plane = tidewright_operator::ControlPlane::connect_lazy(
        &server.url,
        Some(&server.admin_token),
        &tidewright_api::client::ClientTls::default(),
    )
    .expect("control plane client");
    let workers = tidewright_operator::WorkerSettings {
        server: "http://tidewright.tidewright-system:7070".into(),
        image: "ghcr.io/tidewright/tidewright-worker:test".into(),
        token_secret: "tidewright-worker-token".into(),
        token_key: "token".into(),
        metrics_token_secret: None,
    };
    Arc::new(tidewright_operator::Context::new(
        mock.client.clone(),
        control_plane,
        workers,
        "operator-0",
        std::time::Duration::from_secs(5),
    ))
}
