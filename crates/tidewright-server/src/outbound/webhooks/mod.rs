//! Webhooks: tenants' endpoints for their tasks' events (registered by
//! admins), each event delivered as a signed JSON POST (see [`send`]) by
//! the leader's delivery loop ([`dispatch`]), which keeps every delivery
//! and its tries in the store, so they survive a restart or a failover.

mod dispatch;
pub mod event;
pub mod send;

use std::sync::Arc;
use std::time::Duration;

use tidewright_api::abort::AbortOnDrop;
use tidewright_engine::service::{CreateWebhook, WebhookRegistry};
use tidewright_store::schedules::{Schedule, ScheduleRun};
use tidewright_store::webhooks::{Delivery, DeliveryQuery, DeliveryState, TaskPush, Webhook};
use tidewright_store::{Store, Write};
use tokio::sync::{Notify, mpsc};

use crate::error::Error;
/// What registering answers: the services' refusals, as they are passed on.
type Refusal = tidewright_engine::Error;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Let endpoints reach loopback, link-local and private networks.
    pub allow_private_networks: bool,
    /// The pause before the second try; each later one doubles, up to an
    /// hour.
    pub first_retry: Duration,
    /// A delivery not answered 2xx this long after it was made is given up.
    pub give_up_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_private_networks: false,
            first_retry: Duration::from_secs(1),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

const MAX_URL_BYTES: usize = 2048;
/// How long registering an endpoint waits for its host to resolve.
const RESOLVE_FOR: Duration = Duration::from_secs(5);

/// Registering, listing and removing endpoints, and the delivery log;
/// shared by the gRPC methods and the delivery loop it wakes.
pub struct Webhooks {
    store: Arc<dyn Store>,
    settings: Settings,
    changed: Arc<Notify>,
    /// Deliveries committed by others (a schedule's ticks), for the loop.
    made: mpsc::UnboundedSender<Delivery>,
    /// The loop's end of `made`, until it starts.
    to_send: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Delivery>>>,
}

/// The body of an A2A push notification of an event of a task, as stored.
pub type PushBody = fn(&tidewright_core::Event, &tidewright_store::TaskRecord) -> String;

impl Webhooks {
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Webhooks {
        let (made, to_send) = mpsc::unbounded_channel();
        Webhooks {
            store,
            settings,
            changed: Arc::new(Notify::new()),
            made,
            to_send: std::sync::Mutex::new(Some(to_send)),
        }
    }

    /// Starts the delivery loop, woken by `fleet` as events are committed;
    /// it stops when the handle is dropped. A2A push notifications are
    /// made by `push_body`.
    pub(crate) fn start(
        &self,
        fleet: tokio::sync::watch::Receiver<tidewright_engine::hub::FleetSignal>,
        push_body: PushBody,
    ) -> Result<AbortOnDrop, Error> {
        let sender = Arc::new(send::Sender::new(self.settings.allow_private_networks)?);
        let made = self
            .to_send
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                Error::Service(Refusal::Internal(
                    "webhook deliveries are already being sent".into(),
                ))
            })?;
        let dispatcher = dispatch::Dispatcher {
            store: self.store.clone(),
            settings: self.settings.clone(),
            sender,
            changed: self.changed.clone(),
            made,
            fleet,
            push_body,
            book: dispatch::Book::default(),
        };
        Ok(AbortOnDrop(tokio::spawn(dispatcher.run())))
    }

    /// Stores an endpoint checked by the caller, and wakes the loop.
    async fn register(&self, webhook: Webhook) -> Result<Webhook, Refusal> {
        let mut writes = vec![Write::Webhook(Box::new(webhook.clone()))];
        let others_enabled = self.store.webhooks().await?.iter().any(|w| w.enabled);
        if !others_enabled {
            // The delivery loop stands still while no endpoint is enabled.
            // It follows on from here: an endpoint gets only the events
            // after it was registered, and, stored, this place holds even
            // if the control plane stops before the loop first looks.
            writes.push(Write::Deliveries {
                cursor: Some(self.store.fleet_head().await?),
                deliveries: Vec::new(),
            });
        }
        self.commit(writes).await?;
        self.changed.notify_one();
        Ok(webhook)
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), Refusal> {
        self.store
            .write(writes)
            .await
            .map_err(|_| Refusal::ShuttingDown)??;
        Ok(())
    }
}

/// Registering endpoints, which the delivery loop is woken to follow.
#[async_trait::async_trait]
impl WebhookRegistry for Webhooks {
    /// Registers an endpoint for its tenant (already checked as the
    /// caller's); every field is checked, and named when refused.
    async fn create(&self, asked: CreateWebhook) -> Result<Webhook, Refusal> {
        let CreateWebhook {
            tenant,
            url,
            events,
            secret,
        } = asked;
        check_url(&url, self.settings.allow_private_networks).await?;
        if events.is_empty() {
            return Err(Refusal::invalid(
                "events",
                format!("name at least one of {}", event::EVENT_TYPES.join(", ")),
            ));
        }
        let mut kinds = Vec::new();
        for (i, kind) in events.into_iter().enumerate() {
            if !event::EVENT_TYPES.contains(&kind.as_str()) {
                return Err(Refusal::invalid(
                    format!("events[{i}]"),
                    format!("{kind:?} is not one of {}", event::EVENT_TYPES.join(", ")),
                ));
            }
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if let Err(why) = send::secret_key(&secret) {
            return Err(Refusal::invalid("secret", why));
        }
        self.register(endpoint(tenant, url, kinds, secret, None))
            .await
    }

    async fn create_push(
        &self,
        tenant: String,
        url: String,
        push: TaskPush,
    ) -> Result<Webhook, Refusal> {
        check_url(&url, self.settings.allow_private_networks).await?;
        // Signed as every delivery is: a receiver may verify it too.
        let secret = send::new_secret().map_err(Refusal::Internal)?;
        let events = vec![event::PUSH_EVENT.to_string()];
        self.register(endpoint(tenant, url, events, secret, Some(push)))
            .await
    }

    async fn check_url(&self, url: &str) -> Result<(), Refusal> {
        check_url(url, self.settings.allow_private_networks).await
    }

    /// The endpoints of these tenants (all when `None`).
    async fn list(&self, tenants: Option<&[String]>) -> Result<Vec<Webhook>, Refusal> {
        Ok(self
            .store
            .webhooks()
            .await?
            .into_iter()
            .filter(|w| tenants.is_none_or(|t| t.contains(&w.tenant)))
            .collect())
    }

    /// Removes an endpoint of these tenants, with its deliveries.
    async fn remove(&self, id: &str, tenants: Option<&[String]>) -> Result<Webhook, Refusal> {
        let found = self
            .list(tenants)
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| Refusal::NotFound(format!("webhook {id:?}")))?;
        self.commit(vec![Write::RemoveWebhook { id: id.to_string() }])
            .await?;
        self.changed.notify_one();
        Ok(found)
    }

    /// The delivery log, newest first.
    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<Delivery>, Refusal> {
        Ok(self.store.deliveries(query).await?)
    }

    async fn schedule_deliveries(
        &self,
        schedule: &Schedule,
        runs: &[ScheduleRun],
    ) -> Result<Vec<Delivery>, Refusal> {
        let endpoints: Vec<Webhook> = self
            .store
            .webhooks()
            .await?
            .into_iter()
            .filter(|w| w.enabled && w.tenant == schedule.tenant)
            .collect();
        let mut made = Vec::new();
        let now = tidewright_core::calendar::now_micros();
        for run in runs {
            let kind = event::schedule_event_type(run);
            for webhook in endpoints
                .iter()
                .filter(|w| w.events.iter().any(|e| e == kind))
            {
                let id = ulid::Ulid::new().to_string();
                let payload = event::schedule_payload(&id, kind, schedule, run);
                made.push(pending(id, webhook, &run.task_id, kind, payload, now));
            }
        }
        Ok(made)
    }

    fn committed(&self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            // Without a loop (it stopped with the server), the next
            // leader reads them from the store.
            let _ = self.made.send(delivery);
        }
    }
}

/// A new endpoint, enabled, as it is registered.
fn endpoint(
    tenant: String,
    url: String,
    events: Vec<String>,
    secret: String,
    push: Option<TaskPush>,
) -> Webhook {
    Webhook {
        id: ulid::Ulid::new().to_string().to_lowercase(),
        tenant,
        url,
        events,
        secret,
        enabled: true,
        disabled_reason: String::new(),
        created_at: tidewright_core::calendar::now_micros(),
        push,
    }
}

/// A delivery to `webhook` of event `kind` (of task `task_id`, when it is
/// a task's), made at `now` and due at once.
fn pending(
    id: String,
    webhook: &Webhook,
    task_id: &str,
    kind: &str,
    payload: String,
    now: tidewright_core::Micros,
) -> Delivery {
    Delivery {
        id,
        webhook_id: webhook.id.clone(),
        tenant: webhook.tenant.clone(),
        task_id: task_id.to_string(),
        event: kind.to_string(),
        payload,
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at: now,
        last_status: 0,
        last_latency_ms: 0,
        last_error: String::new(),
        created_at: now,
        finished_at: 0,
    }
}

/// An `http(s)://` URL whose host resolves, and not to a private address
/// unless those are allowed. Deliveries check the address again as they
/// connect (see [`send`]).
async fn check_url(url: &str, allow_private: bool) -> Result<(), Refusal> {
    let invalid = |message: String| Refusal::invalid("url", message);
    if url.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "is {} bytes; the limit is {MAX_URL_BYTES}",
            url.len()
        )));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(format!(
            "{url:?} must start with https:// or http://"
        )));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid("must not carry a user name or password".into()));
    }
    let Some(host) = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
    else {
        return Err(invalid(format!("{url:?} has no host")));
    };
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let addresses: Vec<std::net::IpAddr> = match host.parse() {
        Ok(ip) => vec![ip],
        // Bounded: a resolver that hangs must not hold the admin's call.
        Err(_) => tokio::time::timeout(RESOLVE_FOR, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| {
                invalid(format!(
                    "{host} did not resolve within {}s",
                    RESOLVE_FOR.as_secs()
                ))
            })?
            .map_err(|e| invalid(format!("{host} does not resolve: {e}")))?
            .map(|a| a.ip())
            .collect(),
    };
    if !allow_private && let Some(inside) = addresses.into_iter().find(|ip| send::is_private(*ip)) {
        return Err(invalid(send::refusal(host, inside)));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tidewright_core::{Cost, TaskSpec, TaskState};
    use tidewright_store::TaskRecord;

    pub(crate) fn task_record() -> TaskRecord {
        TaskRecord {
            id: String::new(),
            tenant: String::new(),
            spec: TaskSpec::default(),
            state: TaskState::Queued,
            idempotency_key: None,
            message: String::new(),
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            steps: Vec::new(),
            last_seq: 0,
            cost: Cost::default(),
            plan_json: String::new(),
            trace_context: String::new(),
            expires_at: 0,
        }
    }

    #[tokio::test]
    async fn urls_must_be_http_resolvable_and_public_unless_allowed() {
        for (url, says) in [
            ("ftp://example.com/x", "must start with"),
            ("not a url", "is not a URL"),
            ("https://user:pw@example.com/", "user name"),
            ("http://127.0.0.1:9/hook", "loopback, link-local or private"),
            ("http://[::1]:9/hook", "loopback, link-local or private"),
            (
                "http://169.254.169.254/latest/meta-data",
                "loopback, link-local or private",
            ),
            ("http://localhost:9/hook", "loopback, link-local or private"),
            ("http://10.0.0.1/", "loopback, link-local or private"),
        ] {
            let err = check_url(url, false).await.expect_err(url);
            assert!(err.to_string().starts_with("url: "), "{url}: {err}");
            assert!(err.to_string().contains(says), "{url}: {err}");
        }
        check_url("http://127.0.0.1:9/hook", true)
            .await
            .expect("allowed");
        check_url("https://203.0.113.7/hook", false)
            .await
            .expect("public");
    }
}
