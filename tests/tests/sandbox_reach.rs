//! Programs installed the ways developers install them run in a step's
//! sandbox: a version manager's shim that execs the manager from a root on
//! no `PATH` (as pyenv's does), a venv's interpreter, and an interpreter
//! named by its absolute path. And a step that fails for a file outside its
//! sandbox is told which, and the flag that gives it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::*;

fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The real interpreter behind this machine's `python3` (through a shim, if
/// it is one): what the tests' own interpreters stand on.
fn real_python() -> PathBuf {
    let out = succeed(std::process::Command::new("python3").args([
        "-c",
        "import os, sys; print(os.path.realpath(sys.executable))",
    ]));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A pyenv-like manager at `root`: its shim `python3` execs
/// `root/libexec/pyenv`, which runs the version's interpreter (the
/// system's, linked); neither is on any `PATH` the worker has.
fn fake_pyenv(root: &Path) {
    let root_s = root.display();
    executable(
        &root.join("shims/python3"),
        &format!(
            "#!/usr/bin/env bash\nset -e\nprogram=\"${{0##*/}}\"\nexport PYENV_ROOT=\"{root_s}\"\nexec \"{root_s}/libexec/pyenv\" exec \"$program\" \"$@\"\n"
        ),
    );
    executable(
        &root.join("libexec/pyenv"),
        &format!(
            "#!/usr/bin/env bash\nset -e\nshift\nprogram=$1\nshift\nexec \"{root_s}/versions/3/bin/$program\" \"$@\"\n"
        ),
    );
    // The system's interpreter: the shim's whole way there is the root.
    std::fs::create_dir_all(root.join("versions/3/bin")).expect("versions");
    std::os::unix::fs::symlink("/usr/bin/python3", root.join("versions/3/bin/python3"))
        .expect("link");
}

fn shell(id: &str, command: &[&str]) -> v1::StepSpec {
    let mut step = shell_step(id, &[], "true");
    if let Some(v1::step_spec::Runtime::Shell(shell)) = &mut step.runtime {
        shell.command = command.iter().map(|s| s.to_string()).collect();
    }
    step
}

#[tokio::test]
async fn shims_venvs_and_interpreters_by_path_run_in_the_sandbox() {
    let tools = tempfile::tempdir().expect("tempdir");
    let tools = std::fs::canonicalize(tools.path()).expect("real");
    let pyenv = tools.join("home/.pyenv");
    fake_pyenv(&pyenv);
    // A venv of the real interpreter, on no PATH.
    let venv = tools.join("project/.venv");
    succeed(std::process::Command::new(real_python()).args([
        "-m".as_ref(),
        "venv".as_ref(),
        "--without-pip".as_ref(),
        venv.as_os_str(),
    ]));
    // An interpreter named by its absolute path, outside PATH and /usr.
    let opt = tools.join("opt/python/bin/python3");
    std::fs::create_dir_all(opt.parent().expect("dir")).expect("opt");
    std::os::unix::fs::symlink(real_python(), &opt).expect("link");
    // Data the step is not given.
    let outside = tools.join("outside/data.txt");
    std::fs::create_dir_all(outside.parent().expect("dir")).expect("outside");
    std::fs::write(&outside, "not the step's").expect("data");

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    // The shim first on PATH, as pyenv puts it; its root found by the
    // manager's variable (the worker's home has none).
    let path = format!("{}:{}", pyenv.join("shims").display(), system_first_path());
    let _worker = start_strict_worker(
        &server.url,
        &server.data_dir,
        "w1",
        &["shell"],
        4,
        &[],
        &server.worker_token,
        &[
            ("PATH", path.as_str()),
            ("PYENV_ROOT", pyenv.to_str().expect("utf-8")),
        ],
    )
    .expect("worker");
    server.wait_for_agents(&["w1"]).await.expect("registered");
    let client = server.tasks().await.expect("client");

    let print = "import sys; print('ran', sys.prefix)";
    let venv_python = venv.join("bin/python");
    let steps = vec![
        // As the README's example runs it: a shell finds python3 on PATH.
        shell("shim", &["sh", "-c", &format!("python3 -c \"{print}\"")]),
        shell("venv", &[venv_python.to_str().expect("utf-8"), "-c", print]),
        shell("absolute", &[opt.to_str().expect("utf-8"), "-c", print]),
    ];
    let id = submit(&client, task("reach", steps)).await.expect("submit");
    let done = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert_eq!(done.state, v1::TaskState::Succeeded as i32, "{done:?}");
    let venv_log = step_log(&client, &id, "venv").await;
    assert!(
        venv_log.contains(&format!("ran {}", venv.display())),
        "the venv's own prefix: {venv_log}"
    );
    for step in ["shim", "absolute"] {
        let log = step_log(&client, &id, step).await;
        assert!(log.starts_with("ran /"), "{step}: {log}");
    }

    // What registration says the steps may read.
    let agents = server
        .agents()
        .await
        .expect("agents")
        .list_agents(v1::ListAgentsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .agents;
    let isolation = &agents.first().expect("a worker").isolation;
    assert!(
        isolation.contains(&format!("reads pyenv {}", pyenv.display())),
        "{isolation}"
    );

    // A file it was not given: the error names it and the flag.
    let id = submit(
        &client,
        task(
            "unseen",
            vec![shell("cat", &["cat", outside.to_str().expect("utf-8")])],
        ),
    )
    .await
    .expect("submit");
    let done = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert_eq!(done.state, v1::TaskState::Failed as i32, "{done:?}");
    let error = &tidewright_tests::step(&done, "cat").error;
    assert_eq!(
        error,
        &format!(
            "exited with code 1: {} is on the worker but not in the step's sandbox; the workers' --sandbox-read-only {} gives it",
            outside.display(),
            outside.parent().expect("dir").display()
        )
    );
}
