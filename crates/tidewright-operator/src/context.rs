//! What every reconcile shares: the Kubernetes client, the control plane,
//! the worker settings, the event recorder, and the followers of running
//! tasks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::task::JoinHandle;

use crate::control_plane::ControlPlane;
use crate::workers::WorkerSettings;

/// The field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "tidewright-operator";

/// What every reconcile shares.
pub struct Context {
    pub kube: Client,
    pub control_plane: ControlPlane,
    pub workers: WorkerSettings,
    pub recorder: Recorder,
    /// How often a pool's load is read and its size decided.
    pub scale_interval: Duration,
    /// The event-stream followers of running tasks, by resource uid.
    following: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Context {
    pub fn new(
        kube: Client,
        control_plane: ControlPlane,
        workers: WorkerSettings,
        identity: &str,
        scale_interval: Duration,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.into()),
        };
        Context {
            recorder: Recorder::new(kube.clone(), reporter),
            kube,
            control_plane,
            workers,
            scale_interval,
            following: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a follower for `uid` unless one is still running.
    pub(crate) fn follow_once(&self, uid: String, start: impl FnOnce() -> JoinHandle<()>) {
        let mut following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        if following.get(&uid).is_some_and(|h| !h.is_finished()) {
            return;
        }
        following.insert(uid, start());
    }

    pub(crate) fn stop_following(&self, uid: &str) {
        let mut following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = following.remove(uid) {
            handle.abort();
        }
    }

    /// How many running tasks are being followed.
    pub fn followed_tasks(&self) -> usize {
        let following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        following.values().filter(|h| !h.is_finished()).count()
    }
}
