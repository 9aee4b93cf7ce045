//! Who asks and what they may do: a caller's role, what each role may do,
//! its tenants, and the one check every call makes. The transports prove
//! who a caller is (a token, a JWT, a step token, a session); this is what
//! that proof means.

use std::fmt;

use tidewright_core::AttemptKey;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Submits, cancels, retries and reads tasks.
    Developer,
    /// Reads tasks and agents.
    Viewer,
    /// Runs steps: only the worker stream.
    Worker,
    /// One running step, by its step token: shared state in its own task's
    /// scope. Never given in a tokens file or a JWT.
    Step,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "developer" => Some(Role::Developer),
            "viewer" => Some(Role::Viewer),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
            Role::Worker => "worker",
            Role::Step => "step",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadTasks,
    WriteTasks,
    /// Approve or reject a step at its gate; the step's own list of
    /// approvers says who, so every role a person holds may ask.
    DecideApprovals,
    ReadAgents,
    ConnectWorker,
    ReadAudit,
    /// Set tenants' budgets and shares: admins only, as a tenant's own
    /// members would lift their limit or raise their share.
    SetTenants,
    ReadState,
    WriteState,
    /// Scrape `/metrics`: counts over every tenant.
    ReadMetrics,
    /// Put or get agents' session checkpoints: workers (and admins) only,
    /// as a checkpoint holds a whole session.
    KeepCheckpoints,
    /// Register, list and remove webhook endpoints, and read their
    /// deliveries: admins only, as an endpoint sends tasks' events out.
    ManageWebhooks,
    /// Read, watch and list the tasks its own task's steps submitted: a
    /// running step's (see [`Action::for_tasks`]).
    ReadChildren,
    /// Submit tasks as its own task's children, and cancel them.
    WriteChildren,
}

impl Action {
    pub fn allowed(self, role: Role) -> bool {
        match (role, self) {
            (Role::Admin, _) => true,
            (_, Action::ReadAudit | Action::SetTenants | Action::ManageWebhooks) => false,
            (Role::Developer, Action::ConnectWorker | Action::KeepCheckpoints) => false,
            (Role::Developer, _) => true,
            (
                Role::Viewer,
                Action::ReadTasks
                | Action::ReadAgents
                | Action::ReadState
                | Action::ReadMetrics
                | Action::DecideApprovals,
            ) => true,
            (Role::Viewer, _) => false,
            (Role::Worker, Action::ConnectWorker | Action::KeepCheckpoints) => true,
            (Role::Worker, _) => false,
            (
                Role::Step,
                Action::ReadState
                | Action::WriteState
                | Action::ReadChildren
                | Action::WriteChildren,
            ) => true,
            (Role::Step, _) => false,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Action::ReadTasks => "read tasks",
            Action::WriteTasks => "submit, cancel or retry tasks",
            Action::DecideApprovals => "approve or reject steps",
            Action::ReadAgents => "list agents",
            Action::ConnectWorker => "connect as a worker",
            Action::ReadAudit => "read the audit log",
            Action::SetTenants => "set tenants' budgets or shares",
            Action::ReadState => "read shared state or subscribe to topics",
            Action::WriteState => "change shared state or publish to topics",
            Action::ReadMetrics => "read metrics",
            Action::KeepCheckpoints => "keep or read agents' session checkpoints",
            Action::ManageWebhooks => "manage webhooks",
            Action::ReadChildren => "read the tasks its task submitted",
            Action::WriteChildren => "submit or cancel tasks as its task's children",
        }
    }

    /// What reading (or changing) tasks asks of `role`: of a running step,
    /// the same done to its own task's children only, which the calls that
    /// allow it (submit, get, list, watch, cancel) then narrow to.
    pub fn for_tasks(self, role: Role) -> Action {
        match (role, self) {
            (Role::Step, Action::ReadTasks) => Action::ReadChildren,
            (Role::Step, Action::WriteTasks) => Action::WriteChildren,
            _ => self,
        }
    }
}

/// The tenants (namespaces) a token may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    All,
    Only(Vec<String>),
}

/// The tenant of tasks submitted without one.
pub const DEFAULT_TENANT: &str = "default";

/// The caller, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    pub tenants: Tenants,
    /// The attempt a step token was minted for, and is good for alone;
    /// `None` for everyone else.
    pub step: Option<AttemptKey>,
}

impl Identity {
    pub fn can_see(&self, tenant: &str) -> bool {
        match &self.tenants {
            Tenants::All => true,
            Tenants::Only(tenants) => tenants.iter().any(|t| t == tenant),
        }
    }

    /// Where a submit without a tenant goes.
    pub fn default_tenant(&self) -> &str {
        match &self.tenants {
            Tenants::Only(tenants) => tenants.first().map_or(DEFAULT_TENANT, String::as_str),
            Tenants::All => DEFAULT_TENANT,
        }
    }

    /// The tenant a request names (its first when it names none), if this
    /// caller may act in it; `field` names the request's tenant field, and
    /// `acting` what the caller tries ("submit to", "use").
    pub fn tenant_for(&self, named: &str, field: &str, acting: &str) -> Result<String, Error> {
        let tenant = match named {
            "" => self.default_tenant().to_string(),
            named => {
                checked_tenant(field, named)?;
                named.to_string()
            }
        };
        if !self.can_see(&tenant) {
            return Err(Error::PermissionDenied(format!(
                "{} may not {acting} tenant {tenant:?}",
                self.name
            )));
        }
        Ok(tenant)
    }

    /// The tenants a listing may show; `None` for all.
    pub fn visible_tenants(&self) -> Option<Vec<String>> {
        match &self.tenants {
            Tenants::All => None,
            Tenants::Only(tenants) => Some(tenants.clone()),
        }
    }
}

/// The tenants of a token that names none: admins and workers span them
/// all, people see the default tenant.
pub fn default_tenants(role: Role) -> Tenants {
    match role {
        Role::Admin | Role::Worker => Tenants::All,
        Role::Developer | Role::Viewer => Tenants::Only(vec![DEFAULT_TENANT.to_string()]),
        // A step's tenant is in its token; without one it sees nothing.
        Role::Step => Tenants::Only(Vec::new()),
    }
}

/// `name` when it is a tenant's name; else the refusal of request field
/// `field`, saying the rule.
pub fn checked_tenant(field: impl Into<String>, name: &str) -> Result<(), Error> {
    if valid_tenant(name) {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!("{name:?} must be lowercase letters, digits and '-', 1 to 63 bytes"),
    ))
}

/// Tenant names: lowercase letters, digits and '-', 1 to 63 bytes.
pub fn valid_tenant(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The caller, when there is one and its role allows `action`: the one
/// check behind every call, whichever transport brought it.
pub fn permit(caller: Option<&Identity>, action: Action) -> Result<Identity, Error> {
    let identity =
        caller.ok_or_else(|| Error::Unauthenticated("a bearer token is required".into()))?;
    if action.allowed(identity.role) {
        Ok(identity.clone())
    } else {
        Err(denied(identity, action))
    }
}

/// Why `identity` may not do `action`.
pub fn denied(identity: &Identity, action: Action) -> Error {
    Error::PermissionDenied(format!(
        "{} ({}) may not {}",
        identity.name,
        identity.role,
        action.describe()
    ))
}
