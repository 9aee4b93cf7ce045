//! Tenants' shares of the fleet on a real control plane: a cap on running
//! steps set with `tidewright tenant set` holds while another tenant's
//! steps take the free slots, `tenant get` shows each tenant's running and
//! waiting steps, and a bad weight or cap is refused in one line naming
//! its field with nothing stored.

use std::time::Duration;

use serde_json::Value;
use tidewright_api::v1;
use tidewright_tests::*;

/// `tidewright tenant get -o json`, by tenant.
fn shares(server: &Server) -> Vec<Value> {
    let out = succeed(server.cli().args(["tenant", "get", "-o", "json"]));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn share_of<'a>(shares: &'a [Value], tenant: &str) -> &'a Value {
    shares
        .iter()
        .find(|s| s["tenant"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} in {shares:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_cap_waits_while_another_runs_and_bad_shares_store_nothing()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 4)]).await?;
    let client = server.tasks().await?;
    let set = stdout_of(
        server
            .cli()
            .args(["tenant", "set", "acme", "--max-running", "1"]),
    );
    assert!(set.contains("acme"), "{set}");

    // Three of acme's steps that hold their slot until the gate opens.
    let gate = dir.path().join("gate");
    let script = wait_for_gate(&gate);
    let mut acme = Vec::new();
    for i in 0..3 {
        let mut request = task(&format!("acme-{i}"), vec![shell_step("s", &[], &script)]);
        request.tenant = "acme".into();
        acme.push(submit(&client, request).await?);
    }
    // zeta's step, submitted after, starts in a slot acme may not take.
    let mut request = task("zeta", vec![shell_step("s", &[], &script)]);
    request.tenant = "zeta".into();
    let zeta = submit(&client, request).await?;
    wait_step(&client, &zeta, "s", v1::StepState::Running).await?;
    let now = shares(&server);
    let acme_now = share_of(&now, "acme");
    assert_eq!(
        (
            &acme_now["maxRunning"],
            &acme_now["running"],
            &acme_now["waiting"]
        ),
        (&Value::from(1), &Value::from(1), &Value::from(2)),
        "{now:?}"
    );
    assert_eq!(share_of(&now, "zeta")["running"], 1, "{now:?}");

    // Bad shares: one line naming the field, and the share as it was.
    for (args, field) in [
        (["--weight", "0"], "weight"),
        (["--weight", "1001"], "weight"),
        (["--max-running", "-1"], "maxRunning"),
        (["--fairness-key", "owner"], "fairnessKey"),
    ] {
        let refused = fails_in_one_line(server.cli().args(["tenant", "set", "acme"]).args(args));
        assert!(refused.contains("invalid argument"), "{refused}");
        assert!(refused.contains(field), "{args:?}: {refused}");
    }
    let refused = fails_in_one_line(server.cli().args(["tenant", "set", "No_Such"]));
    assert!(refused.contains("tenant"), "{refused}");
    let kept = shares(&server);
    assert_eq!(share_of(&kept, "acme")["maxRunning"], 1, "{kept:?}");
    assert_eq!(share_of(&kept, "acme")["weight"], 1, "{kept:?}");

    // The cap raised: acme's other two start at once.
    succeed(
        server
            .cli()
            .args(["tenant", "set", "acme", "--max-running", "3"]),
    );
    eventually(Duration::from_secs(20), || async {
        let now = shares(&server);
        (share_of(&now, "acme")["running"] == 3).then_some(())
    })
    .await?;
    std::fs::write(&gate, "")?;
    for id in acme.iter().chain([&zeta]) {
        wait_succeeded(&client, id, Duration::from_secs(30)).await?;
    }
    Ok(())
}
