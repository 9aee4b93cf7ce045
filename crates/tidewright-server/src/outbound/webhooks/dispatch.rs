//! The leader's delivery loop. It follows the fleet's events from the
//! stored cursor and turns each one an endpoint asked for into a delivery,
//! committing the deliveries with the cursor's new place (so a restart
//! neither loses nor repeats one). Then it sends each endpoint's
//! deliveries for a task one at a time, in order, retrying with back-off
//! until a 2xx, a 410 (which disables the endpoint), or the give-up time.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tidewright_api::convert::now_micros;
use tidewright_core::Micros;
use tidewright_store::webhooks::{Delivery, DeliveryState, Webhook};
use tidewright_store::{Store, TaskRecord, Write};
use tokio::sync::{Notify, mpsc, watch};

use super::event::{PUSH_EVENT, event_type, payload, pushed};
use super::send::{Answer, Sender};
use super::{PushBody, Settings};
use tidewright_engine::hub::FleetSignal;

/// How often new events are looked for when no commit announced them (a
/// replica that did not make them, or a missed signal).
const POLL: Duration = Duration::from_millis(200);
/// Events read from the fleet at a time.
const PAGE: usize = 4096;
/// Tries on their way at once, over every endpoint.
const MAX_IN_FLIGHT: usize = 64;
/// Pending deliveries read back on start.
const LOADED: usize = 1_000_000;

/// The pause before the next try after `tries` failed ones: `first`,
/// doubling, at most an hour.
pub fn backoff(tries: u32, first: Duration) -> Duration {
    let doubled = first.saturating_mul(1u32 << tries.saturating_sub(1).min(20));
    doubled.min(Duration::from_secs(3600))
}

/// (endpoint, task): the deliveries that go one at a time, in order.
type Chain = (String, String);

pub(super) struct Dispatcher {
    pub(super) store: Arc<dyn Store>,
    pub(super) settings: Settings,
    pub(super) sender: Arc<Sender>,
    pub(super) changed: Arc<Notify>,
    /// Deliveries others committed (a schedule's ticks): already stored.
    pub(super) made: mpsc::UnboundedReceiver<Delivery>,
    /// Wakes the loop when events were committed, so a delivery is made
    /// as its event is stored, not at the next poll.
    pub(super) fleet: watch::Receiver<FleetSignal>,
    /// The body of an A2A push notification (the A2A adapter's format).
    pub(super) push_body: PushBody,
    /// What the loop keeps track of; empty until it loads.
    pub(super) book: Book,
}

/// What the delivery loop keeps track of.
#[derive(Default)]
pub(super) struct Book {
    webhooks: HashMap<String, Webhook>,
    cursor: u64,
    chains: HashMap<Chain, VecDeque<Delivery>>,
    /// Every chain with deliveries that is not on its way, by when its
    /// head is due: the loop takes what is due from the front, where a
    /// scan of every chain per answer made a backlog cost its square.
    due: BTreeSet<(Micros, Chain)>,
    in_flight: HashSet<Chain>,
    /// Ids that sort in the order deliveries are made, even within one
    /// millisecond: a restart reads the pending ones back by id.
    ids: ulid::Generator,
}

impl Dispatcher {
    /// What a new leader picks up: the endpoints, the cursor (from now
    /// when there is none yet) and every pending delivery.
    async fn load(&mut self) -> Result<(), tidewright_store::Error> {
        self.reload().await?;
        self.book.cursor = match self.store.webhook_cursor().await? {
            0 => self.store.fleet_head().await?,
            cursor => cursor,
        };
        for delivery in self.store.pending_deliveries(LOADED).await? {
            self.queue(delivery);
        }
        Ok(())
    }

    async fn reload(&mut self) -> Result<(), tidewright_store::Error> {
        self.book.webhooks = self
            .store
            .webhooks()
            .await?
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        // A removed endpoint's deliveries went with it.
        let webhooks = &self.book.webhooks;
        self.book
            .chains
            .retain(|(id, _), _| webhooks.contains_key(id));
        self.book.due = self
            .book
            .chains
            .iter()
            .filter(|(chain, _)| !self.book.in_flight.contains(*chain))
            .filter_map(|(chain, deliveries)| {
                Some((deliveries.front()?.next_attempt_at, chain.clone()))
            })
            .collect();
        // Registering the first endpoint stores where to follow from (see
        // `Webhooks::create`); without endpoints the loop stood still.
        self.book.cursor = self.book.cursor.max(self.store.webhook_cursor().await?);
        Ok(())
    }

    /// Puts a delivery at the end of its chain.
    fn queue(&mut self, delivery: Delivery) {
        let chain = (delivery.webhook_id.clone(), delivery.task_id.clone());
        let deliveries = self.book.chains.entry(chain.clone()).or_default();
        if deliveries.is_empty() && !self.book.in_flight.contains(&chain) {
            self.book.due.insert((delivery.next_attempt_at, chain));
        }
        deliveries.push_back(delivery);
    }

    pub(super) async fn run(mut self) {
        while let Err(e) = self.load().await {
            tracing::warn!(error = %e, "webhooks: reading the pending deliveries; trying again");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (done, mut answers) = mpsc::unbounded_channel();
        let mut settled = Vec::with_capacity(MAX_IN_FLIGHT);
        // New events are looked for when a commit announced some, when the
        // endpoints changed, and at least every POLL: not after every
        // answer, since reading the fleet when nothing is new costs as
        // much as a page.
        let mut look = true;
        let mut looked_at = tokio::time::Instant::now();
        loop {
            if look || looked_at.elapsed() >= POLL {
                // Before the read: a commit after it wakes the loop again.
                self.fleet.mark_unchanged();
                looked_at = tokio::time::Instant::now();
                if let Err(e) = self.collect().await {
                    tracing::warn!(error = %e, "webhooks: turning events into deliveries");
                }
            }
            look = false;
            self.start_due(&done);
            let pause = self.until_next_due().map_or(POLL, |due| due.min(POLL));
            // Without an enabled endpoint the loop stays asleep through the
            // fleet's commits.
            let following = self.book.webhooks.values().any(|w| w.enabled);
            let mut fleet = self.fleet.clone();
            tokio::select! {
                // Every answer that is in, recorded in one commit.
                _ = answers.recv_many(&mut settled, MAX_IN_FLIGHT) => {
                    self.settle(std::mem::take(&mut settled)).await;
                }
                _ = self.changed.notified() => {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "webhooks: reading the endpoints");
                    }
                    look = true;
                }
                Some(delivery) = self.made.recv() => {
                    // One committed while this loop read the pending
                    // deliveries on start is queued already.
                    let chain = (delivery.webhook_id.clone(), delivery.task_id.clone());
                    let queued = self
                        .book
                        .chains
                        .get(&chain)
                        .is_some_and(|c| c.iter().any(|d| d.id == delivery.id));
                    if !queued {
                        self.queue(delivery);
                    }
                }
                Ok(()) = fleet.changed(), if following => look = true,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Turns the events after the cursor into deliveries, a page at a time.
    async fn collect(&mut self) -> Result<(), tidewright_store::Error> {
        let enabled: Vec<Webhook> = self
            .book
            .webhooks
            .values()
            .filter(|w| w.enabled)
            .cloned()
            .collect();
        if enabled.is_empty() {
            // Nobody to deliver to: no reads at all. The next endpoint
            // stores where to follow from when it is registered.
            return Ok(());
        }
        loop {
            let page = self
                .store
                .fleet_events_after(self.book.cursor, None, PAGE)
                .await?;
            if page.through == self.book.cursor {
                return Ok(());
            }
            // The page's events some endpoint asked for, and their tasks in
            // one read: each payload names its task, and its tenant picks
            // the endpoints.
            // An endpoint wants the events of the types it named, or, for
            // an A2A push config, its task's state changes; either only
            // from when it was registered.
            let wanted_by = |w: &Webhook, kind: Option<&str>, event: &tidewright_core::Event| {
                event.at >= w.created_at
                    && match &w.push {
                        Some(push) => push.task_id == event.task_id && pushed(event),
                        None => kind.is_some_and(|k| w.events.iter().any(|e| e == k)),
                    }
            };
            let asked: Vec<(Option<&str>, &tidewright_core::Event)> = page
                .events
                .iter()
                .map(|(_, event)| (event_type(event), event))
                .filter(|(kind, event)| enabled.iter().any(|w| wanted_by(w, *kind, event)))
                .collect();
            let ids: Vec<String> = asked.iter().map(|(_, e)| e.task_id.clone()).collect();
            let tasks: HashMap<String, TaskRecord> = self
                .store
                .tasks_by_id(&ids)
                .await?
                .into_iter()
                .map(|task| (task.id.clone(), task))
                .collect();
            let now = now_micros();
            let mut made = Vec::new();
            for (kind, event) in asked {
                let Some(task) = tasks.get(&event.task_id) else {
                    continue;
                };
                for webhook in enabled
                    .iter()
                    .filter(|w| wanted_by(w, kind, event) && w.tenant == task.tenant)
                {
                    let id = self.next_id();
                    let (kind, body) = match (&webhook.push, kind) {
                        (Some(_), _) => (PUSH_EVENT, (self.push_body)(event, task)),
                        (None, Some(kind)) => (kind, payload(&id, kind, event, task)),
                        (None, None) => continue,
                    };
                    made.push(super::pending(id, webhook, &task.id, kind, body, now));
                }
            }
            commit(
                &*self.store,
                vec![Write::Deliveries {
                    cursor: Some(page.through),
                    deliveries: made.clone(),
                }],
            )
            .await?;
            self.book.cursor = page.through;
            for delivery in made {
                self.queue(delivery);
            }
            if !page.full {
                return Ok(());
            }
        }
    }

    fn next_id(&mut self) -> String {
        // The generator fails only when 2^80 ids were made in one
        // millisecond; a fresh one then still sorts after the last.
        self.book
            .ids
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string()
    }

    /// Sends the head of every chain that is due and not on its way.
    fn start_due(&mut self, done: &mpsc::UnboundedSender<(Delivery, Answer)>) {
        let now = now_micros();
        while self.book.in_flight.len() < MAX_IN_FLIGHT {
            let Some((at, chain)) = self.book.due.pop_first() else {
                return;
            };
            if at > now {
                self.book.due.insert((at, chain));
                return;
            }
            let Some(delivery) = self
                .book
                .chains
                .get(&chain)
                .and_then(|c| c.front())
                .cloned()
            else {
                continue;
            };
            // A disabled endpoint's chain waits out of the queue; reading
            // the endpoints again puts it back.
            let Some(webhook) = self
                .book
                .webhooks
                .get(&delivery.webhook_id)
                .filter(|w| w.enabled)
            else {
                continue;
            };
            self.book.in_flight.insert(chain);
            let (sender, done) = (self.sender.clone(), done.clone());
            let (url, secret) = (webhook.url.clone(), webhook.secret.clone());
            let headers = push_headers(webhook);
            tokio::spawn(async move {
                let answer = sender
                    .send(&url, &secret, &delivery.id, &delivery.payload, &headers)
                    .await;
                let _ = done.send((delivery, answer));
            });
        }
    }

    /// How long until the earliest pending try that is not on its way
    /// can go; `None` while as many as may go are on their way (an answer
    /// wakes the loop then, and a wait of zero would spin it).
    fn until_next_due(&self) -> Option<Duration> {
        if self.book.in_flight.len() >= MAX_IN_FLIGHT {
            return None;
        }
        let (at, _) = self.book.due.first()?;
        Some(Duration::from_micros(
            at.saturating_sub(now_micros()).max(0) as u64,
        ))
    }

    /// Records how the tries in `answers` went, in one commit, and what
    /// follows from each.
    async fn settle(&mut self, answers: Vec<(Delivery, Answer)>) {
        let mut writes = Vec::new();
        let mut settled = Vec::with_capacity(answers.len());
        for (delivery, answer) in answers {
            self.settle_one(delivery, answer, &mut writes, &mut settled);
        }
        let count = settled.len();
        writes.push(Write::Deliveries {
            cursor: None,
            deliveries: settled,
        });
        if let Err(e) = commit(&*self.store, writes).await {
            // They stay pending in the store: a new leader tries them again.
            tracing::warn!(error = %e, count, "webhooks: recording tries");
        }
    }

    fn settle_one(
        &mut self,
        mut delivery: Delivery,
        answer: Answer,
        writes: &mut Vec<Write>,
        settled: &mut Vec<Delivery>,
    ) {
        let chain = (delivery.webhook_id.clone(), delivery.task_id.clone());
        self.book.in_flight.remove(&chain);
        let Some(webhook) = self.book.webhooks.get(&delivery.webhook_id).cloned() else {
            // Removed while the try was on its way.
            self.book.chains.remove(&chain);
            return;
        };
        let now = now_micros();
        delivery.attempts += 1;
        delivery.last_status = answer.status.unwrap_or(0);
        delivery.last_latency_ms = u32::try_from(answer.latency.as_millis()).unwrap_or(u32::MAX);
        delivery.last_error = answer.error;
        match answer.status {
            Some(status) if (200..300).contains(&status) => {
                delivery.state = DeliveryState::Delivered;
                delivery.finished_at = now;
            }
            Some(410) => {
                // The receiver says it is gone for good: so is the endpoint.
                let reason = format!("its receiver answered 410 Gone to delivery {}", delivery.id);
                tracing::warn!(webhook = %webhook.id, url = %webhook.url, "webhook disabled: {reason}");
                delivery.state = DeliveryState::Failed;
                delivery.finished_at = now;
                let disabled = Webhook {
                    enabled: false,
                    disabled_reason: reason,
                    ..webhook
                };
                writes.push(Write::Webhook(Box::new(disabled.clone())));
                self.book.webhooks.insert(disabled.id.clone(), disabled);
                // Its other pending deliveries will never go.
                let others: Vec<Chain> = self
                    .book
                    .chains
                    .keys()
                    .filter(|(id, _)| *id == delivery.webhook_id)
                    .cloned()
                    .collect();
                self.book
                    .due
                    .retain(|(_, (id, _))| *id != delivery.webhook_id);
                for other in others {
                    for mut pending in self.book.chains.remove(&other).unwrap_or_default() {
                        if pending.id == delivery.id {
                            continue;
                        }
                        pending.state = DeliveryState::Failed;
                        pending.finished_at = now;
                        pending.last_error = "not sent: its endpoint was disabled".into();
                        settled.push(pending);
                    }
                }
            }
            _ => {
                let retry_at = now.saturating_add(
                    backoff(delivery.attempts, self.settings.first_retry).as_micros() as Micros,
                );
                let give_up_at = delivery
                    .created_at
                    .saturating_add(self.settings.give_up_after.as_micros() as Micros);
                if retry_at > give_up_at {
                    delivery.state = DeliveryState::Failed;
                    delivery.finished_at = now;
                    delivery.last_error = format!(
                        "{}; given up after {} tries",
                        delivery.last_error, delivery.attempts
                    );
                } else {
                    delivery.next_attempt_at = retry_at;
                }
            }
        }
        settled.push(delivery.clone());
        let Some(deliveries) = self.book.chains.get_mut(&chain) else {
            return;
        };
        if delivery.state == DeliveryState::Pending {
            if let Some(head) = deliveries.front_mut() {
                *head = delivery;
            }
        } else {
            deliveries.pop_front();
        }
        match deliveries.front() {
            Some(head) => {
                self.book.due.insert((head.next_attempt_at, chain));
            }
            None => {
                self.book.chains.remove(&chain);
            }
        }
    }
}

/// What an A2A push notification carries besides the signature: the
/// client's token, and its `Authorization` header.
fn push_headers(webhook: &Webhook) -> Vec<(&'static str, String)> {
    let Some(push) = &webhook.push else {
        return Vec::new();
    };
    let mut headers = Vec::new();
    if !push.token.is_empty() {
        headers.push(("x-a2a-notification-token", push.token.clone()));
    }
    if !push.auth_scheme.is_empty() {
        let value = format!("{} {}", push.auth_scheme, push.auth_credentials);
        headers.push(("authorization", value.trim_end().to_string()));
    }
    headers
}

async fn commit(store: &dyn Store, writes: Vec<Write>) -> Result<(), tidewright_store::Error> {
    store
        .write(writes)
        .await
        .map_err(|_| tidewright_store::Error::Closed)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tidewright_core::{Event, EventKind, StepState, TaskState};
    use tidewright_store::memory::MemoryStore;

    /// A receiver on loopback answering `statuses` in turn, then 204; it
    /// keeps (event, delivery id, status) of each request.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<(String, String, u16)>>>) {
        use axum::http::{HeaderMap, StatusCode};
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(statuses)));
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (record, script) = (record.clone(), script.clone());
                async move {
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let status = script.lock().expect("script").pop_front().unwrap_or(204);
                    let header = |name| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    record.lock().expect("seen").push((
                        body["type"].as_str().unwrap_or_default().to_string(),
                        header(super::super::send::ID_HEADER),
                        status,
                    ));
                    StatusCode::from_u16(status).expect("status")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            task_id: "t1".into(),
            seq,
            at: now_micros(),
            kind,
        }
    }

    /// Registers an endpoint of tenant `team` for `events`, as
    /// `Webhooks::create` does (with the place events are followed from),
    /// and starts the loop; it stops when the handle is dropped.
    async fn start(
        store: &Arc<dyn Store>,
        hub: &tidewright_engine::hub::Hub,
        url: String,
        events: &[&str],
    ) -> tidewright_api::abort::AbortOnDrop {
        let webhook = Webhook {
            id: "w1".into(),
            tenant: "team".into(),
            url,
            events: events.iter().map(|e| e.to_string()).collect(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            enabled: true,
            disabled_reason: String::new(),
            created_at: 0,
            push: None,
        };
        let head = store.fleet_head().await.expect("head");
        commit(
            &**store,
            vec![
                Write::Webhook(Box::new(webhook)),
                Write::Deliveries {
                    cursor: Some(head),
                    deliveries: Vec::new(),
                },
            ],
        )
        .await
        .expect("webhook");
        let settings = Settings {
            allow_private_networks: true,
            first_retry: Duration::from_millis(20),
            ..Settings::default()
        };
        let sender = Arc::new(Sender::new(true).expect("sender"));
        let dispatcher = Dispatcher {
            store: store.clone(),
            settings,
            sender,
            changed: Arc::new(Notify::new()),
            made: mpsc::unbounded_channel().1,
            fleet: hub.watch_fleet(),
            // These endpoints are not A2A push configs.
            push_body: |_, _| unreachable!("no push config here"),
            book: Book::default(),
        };
        tidewright_api::abort::AbortOnDrop(tokio::spawn(dispatcher.run()))
    }

    /// The loop over a store in memory: one task's two events go in order,
    /// the second waiting while the first is retried after a 500; an event
    /// of another tenant, or of a type not asked for, makes no delivery;
    /// the log keeps every try.
    #[tokio::test]
    async fn one_tasks_deliveries_go_in_order_through_a_retry() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        store
            .create_tasks(vec![
                tidewright_store::conformance::new_task("t1", "team", None),
                tidewright_store::conformance::new_task("t2", "other", None),
            ])
            .await
            .expect("tasks");
        let (url, seen) = receiver(vec![500]).await;
        let hub = tidewright_engine::hub::Hub::default();
        let head = store.fleet_head().await.expect("head");
        let running = start(&store, &hub, url, &["step.failed", "task.failed"]).await;

        let failed_step = EventKind::StepState {
            step: "a".into(),
            state: StepState::Failed,
            attempt: 1,
            worker: "w".into(),
            message: "exit 1".into(),
            waits_for: String::new(),
            conflict: None,
        };
        let failed_task = EventKind::TaskState {
            state: TaskState::Failed,
            message: "step a failed".into(),
        };
        let elsewhere = Event {
            task_id: "t2".into(),
            ..event(9, failed_task.clone())
        };
        let not_asked = event(
            2,
            EventKind::StepState {
                step: "a".into(),
                state: StepState::Running,
                attempt: 1,
                worker: "w".into(),
                message: String::new(),
                waits_for: String::new(),
                conflict: None,
            },
        );
        commit(
            &*store,
            vec![
                Write::Event(not_asked),
                Write::Event(event(3, failed_step)),
                Write::Event(event(4, failed_task)),
                Write::Event(elsewhere),
            ],
        )
        .await
        .expect("events");

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let log = loop {
            let log = store
                .deliveries(tidewright_store::webhooks::DeliveryQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect("log");
            if log.len() == 2 && log.iter().all(|d| d.state == DeliveryState::Delivered) {
                break log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not delivered: {log:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        drop(running);
        let seen = seen.lock().expect("seen").clone();
        let events: Vec<(&str, u16)> = seen.iter().map(|(e, _, s)| (e.as_str(), *s)).collect();
        assert_eq!(
            events,
            [
                ("step.failed", 500),
                ("step.failed", 204),
                ("task.failed", 204)
            ],
            "the task's second event waited for its first"
        );
        assert_eq!(seen[0].1, seen[1].1, "a retry keeps its delivery's id");
        // Newest first: the task's failure, then its step's, tried twice.
        assert_eq!(
            log.iter()
                .map(|d| (d.event.as_str(), d.attempts))
                .collect::<Vec<_>>(),
            [("task.failed", 1), ("step.failed", 2)]
        );
        assert!(store.webhook_cursor().await.expect("cursor") > head);
    }

    /// Many tasks at once, more than go at a time: each task's delivery
    /// is sent exactly once and recorded delivered, while the first tries
    /// of a few are answered 500 and retried without holding up the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_tasks_is_delivered_once_each_around_the_retries() {
        const TASKS: usize = 300;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ids: Vec<String> = (0..TASKS).map(|n| format!("t{n:03}")).collect();
        store
            .create_tasks(
                ids.iter()
                    .map(|id| tidewright_store::conformance::new_task(id, "team", None))
                    .collect(),
            )
            .await
            .expect("tasks");
        let (url, seen) = receiver(vec![500, 500, 500]).await;
        let hub = tidewright_engine::hub::Hub::default();
        let running = start(&store, &hub, url, &["task.succeeded"]).await;
        let succeeded = EventKind::TaskState {
            state: TaskState::Succeeded,
            message: String::new(),
        };
        commit(
            &*store,
            ids.iter()
                .map(|id| {
                    Write::Event(Event {
                        task_id: id.clone(),
                        ..event(2, succeeded.clone())
                    })
                })
                .collect(),
        )
        .await
        .expect("events");
        // The commit announces itself, as the engine's do.
        hub.fleet_changed();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let log = loop {
            let log = store
                .deliveries(tidewright_store::webhooks::DeliveryQuery {
                    limit: TASKS + 1,
                    ..Default::default()
                })
                .await
                .expect("log");
            if log.len() == TASKS && log.iter().all(|d| d.state == DeliveryState::Delivered) {
                break log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {TASKS} delivered",
                log.iter()
                    .filter(|d| d.state == DeliveryState::Delivered)
                    .count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        drop(running);
        let seen = seen.lock().expect("seen").clone();
        assert_eq!(seen.len(), TASKS + 3, "each once, and the three retries");
        let accepted: HashSet<&str> = seen
            .iter()
            .filter(|(_, _, status)| *status == 204)
            .map(|(_, id, _)| id.as_str())
            .collect();
        assert_eq!(accepted.len(), TASKS, "no delivery accepted twice");
        let mut tasks: Vec<&str> = log.iter().map(|d| d.task_id.as_str()).collect();
        tasks.sort_unstable();
        assert_eq!(tasks, ids, "one delivery per task");
        let retried = log.iter().filter(|d| d.attempts == 2).count();
        assert_eq!(retried, 3, "the three answered 500 went again");
        assert!(log.iter().all(|d| d.last_status == 204));
    }

    #[test]
    fn tries_back_off_doubling_up_to_an_hour() {
        let first = Duration::from_secs(1);
        let pauses: Vec<u64> = (1..=5).map(|n| backoff(n, first).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16]);
        assert_eq!(backoff(13, first), Duration::from_secs(3600));
        assert_eq!(backoff(u32::MAX, first), Duration::from_secs(3600));
        // A day of tries: about 30 of them.
        let mut elapsed = Duration::ZERO;
        let mut tries = 0;
        while elapsed < Duration::from_secs(24 * 3600) {
            tries += 1;
            elapsed += backoff(tries, first);
        }
        assert!((25..=40).contains(&tries), "{tries}");
    }
}
