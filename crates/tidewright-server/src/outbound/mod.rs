//! What the application services call out to, given to them at
//! construction: the planner (Anthropic's Messages API), the tasks'
//! repositories (git), and the tenants' webhook endpoints.

pub mod planner;
pub mod repos;
pub mod webhooks;
