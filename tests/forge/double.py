"""A loopback double of the two forges tidewright opens pull requests on.

GitHub's calls are checked against GitHub's own published OpenAPI
description (npm @octokit/openapi) with openapi-core: a request GitHub's
description refuses gets GitHub's 422 here, and counts as invalid. GitLab
publishes no OpenAPI description of its merge requests; its calls are
checked against the REST documentation of merge requests
(https://docs.gitlab.com/api/merge_requests/), as written out below.

Both check what the real forges check that no description says: the token,
and that the branches exist (read from the git server's repositories on
disk, so a branch that was not pushed is refused as GitHub refuses it). A
GitHub pull request whose head is on its base is merged, as GitHub marks one
whose head commit reaches the base by a push; the listing takes `state`.
GET /_double/requests answers every request seen, each with whether it was
valid. Started by the tests (tests/src/forge.rs); writes its port to
--port-file when it listens.

Triggers' calls are here too: a user's permission on a repository (the
users the tests add, with theirs; on GitLab, a member's access level) and
comments on issues and pull requests (GitLab's notes). What a followed pull request needs of GitHub is here too, each call checked
against the same description: the pull request itself (closed by PATCH),
its reviews and their comments, replies in a comment's thread, the check
runs and commit statuses on a commit, the repository's allowed merge
methods, and the merge. The double runs a project's CI (POST /_double/ci)
on each commit a check-runs call asks about: queued, in progress, then
completed with the exit's conclusion and output, in a checkout of the
commit. Merges are made in the git server's repository as GitHub makes
them (a merge commit, a squash; a rebase here only as a fast-forward), once
the method is allowed (POST /_double/settings), the head is the one asked
for, and the approvals the protection wants are in. Reviewers are users
the tests add with a token of their own (POST /_double/users).
"""

import argparse
import datetime
import json
import os
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest

GITHUB = "https://api.github.com"
REPO = "/repos/{owner}/{repo}"
# The calls the double answers: pull requests, their reviews and merges,
# the checks on a commit, and the repository's settings.
SERVED = (
    REPO + "/pulls",
    REPO + "/commits/{ref}/check-runs",
    REPO + "/commits/{ref}/status",
    REPO + "/statuses/{sha}",
    REPO + "/collaborators/{username}/permission",
    REPO + "/issues/{issue_number}/comments",
)


def github_description(path):
    """GitHub's description of the calls the double answers, unchanged:
    the other paths are left out so it loads in a second, not thirty."""
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    spec["paths"] = {
        k: v for k, v in spec["paths"].items() if k == REPO or k.startswith(SERVED)
    }
    # The document itself is GitHub's; checking it again at every start
    # takes half a minute.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Forge:
    def __init__(self, spec, repos, token):
        self.github = github_description(spec)
        self.repos = repos
        self.token = token
        self.lock = threading.Lock()
        self.seen = []
        self.pulls = []
        # Who each token is: tidewright's, and those the tests add
        # (reviewers), with their permission on every repository.
        self.users = {token: {"login": "tidewright-bot", "permission": "write"}}
        # Per project: the CI the double runs on each commit a check-runs
        # call asks about (name -> command), its check runs by commit, its
        # commit statuses by commit, and its merge settings.
        self.ci = {}
        self.runs = {}
        self.statuses = {}
        self.settings = {}
        self.reviews = []
        self.comments = []
        # Comments on issues and pull requests (a triggered task's result),
        # by project and number.
        self.issue_comments = []
        # GitLab's notes on issues and merge requests, by what they are on.
        self.notes = []
        self.ids = 1000

    def next_id(self):
        with self.lock:
            self.ids += 1
            return self.ids

    def git(self, project, *args, env=None):
        bare = f"{self.repos}/{project}.git"
        return subprocess.run(
            ["git", "-C", bare, *args], capture_output=True, text=True, env=env
        )

    def tip(self, project, branch):
        done = self.git(project, "rev-parse", "--verify", "-q", f"refs/heads/{branch}")
        return done.stdout.strip() if done.returncode == 0 else ""

    def check_runs(self, project, sha):
        """The project's CI on `sha`: each check started the first time it
        is asked about (queued, then in progress), run in a checkout of the
        commit, completed with its exit's conclusion and its output."""
        started = []
        with self.lock:
            runs = self.runs.setdefault((project, sha), {})
            for name, command in self.ci.get(project, {}).items():
                if name not in runs:
                    runs[name] = {
                        "id": self.ids + 1 + len(started),
                        "name": name,
                        "head_sha": sha,
                        "status": "queued",
                        "conclusion": None,
                        "output": {"title": None, "summary": None, "text": None},
                    }
                    started.append((name, command))
            self.ids += len(started)
            answer = [dict(r) for r in runs.values()]
        for name, command in started:
            threading.Thread(
                target=self.run_check, args=(project, sha, name, command), daemon=True
            ).start()
        return answer

    def run_check(self, project, sha, name, command):
        run = self.runs[(project, sha)][name]
        run["status"] = "in_progress"
        import tempfile

        with tempfile.TemporaryDirectory() as tree:
            archive = subprocess.run(
                ["git", "-C", f"{self.repos}/{project}.git", "archive", sha],
                capture_output=True,
            )
            subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
            done = subprocess.run(
                ["sh", "-c", command], cwd=tree, capture_output=True, text=True, timeout=300
            )
        said = (done.stdout + done.stderr)[-4000:]
        with self.lock:
            run["output"] = {
                "title": f"{name}: exit {done.returncode}",
                "summary": f"`{command}` exited {done.returncode}",
                "text": said,
            }
            run["conclusion"] = "success" if done.returncode == 0 else "failure"
            run["status"] = "completed"

    def has_branch(self, project, branch):
        bare = f"{self.repos}/{project}.git"
        done = subprocess.run(
            ["git", "-C", bare, "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            capture_output=True,
        )
        return done.returncode == 0

    def merged(self, project, head, base):
        """Whether the branch `head` is in `base`: as GitHub does, a pull
        request whose head commit reaches its base by a push is merged."""
        bare = f"{self.repos}/{project}.git"
        done = subprocess.run(
            ["git", "-C", bare, "merge-base", "--is-ancestor", f"refs/heads/{head}", f"refs/heads/{base}"],
            capture_output=True,
        )
        return done.returncode == 0

    def record(self, forge, method, path, valid, why=""):
        with self.lock:
            self.seen.append(
                {"forge": forge, "method": method, "path": path, "valid": valid, "why": why}
            )


class Handler(BaseHTTPRequestHandler):
    forge = None

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        if self.path == "/_double/requests":
            with self.forge.lock:
                return self.answer(200, self.forge.seen)
        self.route("GET", b"")

    def do_POST(self):
        if self.path.startswith("/_double/"):
            return self.control(json.loads(self.body()))
        self.route("POST", self.body())

    def do_PUT(self):
        self.route("PUT", self.body())

    def do_PATCH(self):
        self.route("PATCH", self.body())

    def control(self, body):
        """What the tests set up: a user and token (a reviewer), the CI a
        project runs on each commit, its merge settings and protection."""
        forge = self.forge
        with forge.lock:
            if self.path == "/_double/users":
                forge.users[body["token"]] = {
                    "login": body["login"],
                    "permission": body.get("permission", "write"),
                    # GitLab's members API asks by the user's id.
                    "id": body.get("id", 0),
                }
            elif self.path == "/_double/ci":
                forge.ci.setdefault(body["project"], {})[body["name"]] = body["run"]
            elif self.path == "/_double/settings":
                forge.settings.setdefault(body["project"], {}).update(body["settings"])
            else:
                return self.answer(404, {"message": "no such control"})
        self.answer(200, {})

    def route(self, method, data):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/api/v4/"):
            return self.gitlab(method, url, data)
        return self.github(method, url, data)

    # ------------------------------------------------------------- GitHub

    def github(self, method, url, data):
        forge = self.forge
        refuse = lambda status, message, valid=False: (
            forge.record("github", method, self.path, valid, message),
            self.answer(status, {"message": message, "documentation_url": "double"}),
        )
        # GitHub refuses a call without a User-Agent, and one whose token
        # it does not know.
        if not self.headers.get("user-agent"):
            return refuse(403, "Request forbidden by administrative rules: no User-Agent")
        token = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        user = forge.users.get(token)
        if user is None:
            return refuse(401, "Bad credentials", valid=True)
        args = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        request = MockRequest(
            GITHUB,
            method.lower(),
            url.path,
            args=args,
            headers=dict(self.headers.items()),
            data=data or None,
            content_type=self.headers.get("content-type") or "application/json",
        )
        try:
            forge.github.validate_request(request)
        except Exception as e:  # noqa: BLE001 - every refusal is the same 422
            cause = e.__cause__
            detail = [str(x).splitlines()[0] for x in getattr(cause, "schema_errors", [])]
            return refuse(422, f"{type(e).__name__}: {e} {detail}")
        parts = url.path.split("/")
        owner, repo = parts[2], parts[3]
        project = f"{owner}/{repo}"
        rest = parts[4:]
        body = json.loads(data) if data else {}
        ok = lambda status, answer: (
            forge.record("github", method, self.path, True),
            self.answer(status, answer),
        )
        if not rest:
            settings = forge.settings.get(project, {})
            return ok(200, {
                "full_name": project,
                "allow_merge_commit": settings.get("allow_merge_commit", True),
                "allow_squash_merge": settings.get("allow_squash_merge", True),
                "allow_rebase_merge": settings.get("allow_rebase_merge", True),
            })
        if rest[0] == "commits" and rest[2:] == ["check-runs"]:
            runs = forge.check_runs(project, rest[1])
            return ok(200, {"total_count": len(runs), "check_runs": runs})
        if rest[0] == "commits" and rest[2:] == ["status"]:
            statuses = list(forge.statuses.get((project, rest[1]), {}).values())
            states = {s["state"] for s in statuses}
            state = (
                "failure" if states & {"failure", "error"}
                else "pending" if "pending" in states or not statuses
                else "success"
            )
            return ok(200, {
                "state": state, "sha": rest[1], "total_count": len(statuses), "statuses": statuses,
            })
        if rest[0] == "statuses":
            status = {
                "id": forge.next_id(),
                "state": body["state"],
                "context": body.get("context", "default"),
                "description": body.get("description"),
                "target_url": body.get("target_url"),
            }
            with forge.lock:
                forge.statuses.setdefault((project, rest[1]), {})[status["context"]] = status
            return ok(201, status)
        if rest[0] == "collaborators" and rest[2:] == ["permission"]:
            login = urllib.parse.unquote(rest[1])
            found = next((u for u in forge.users.values() if u["login"] == login), None)
            if found is None:
                return refuse(404, "Not Found", valid=True)
            # GitHub's `permission` is admin, write, read or none: maintain
            # reads as write, triage as read; `role_name` says which.
            role = found["permission"]
            legacy = {"maintain": "write", "triage": "read"}.get(role, role)
            return ok(200, {"permission": legacy, "role_name": role, "user": {"login": login}})
        if rest[0] == "issues" and rest[2:] == ["comments"]:
            number = int(rest[1])
            if method == "GET":
                return ok(200, [
                    {k: v for k, v in c.items() if k not in ("project", "issue")}
                    for c in forge.issue_comments
                    if c["project"] == project and c["issue"] == number
                ])
            comment = {
                "id": forge.next_id(),
                "body": body["body"],
                "user": {"login": user["login"]},
                "html_url": f"https://github.example/{project}/issues/{number}#issuecomment",
                "created_at": now(),
            }
            with forge.lock:
                forge.issue_comments.append(dict(comment, project=project, issue=number))
            return ok(201, comment)
        if rest == ["pulls"] and method == "GET":
            head = args.get("head", "")
            found = [
                self.pull_answer(p)
                for p in forge.pulls
                if p["forge"] == "github"
                and p["project"] == project
                and (not head or f"{owner}:{p['head']}" == head)
                and (not args.get("base") or p["base"] == args["base"])
            ]
            # GitHub lists the open ones unless asked for others.
            wanted = args.get("state", "open")
            return ok(200, [p for p in found if wanted in ("all", p["state"])])
        if rest == ["pulls"]:
            return self.open_pull(project, body, refuse)
        pull = next(
            (p for p in forge.pulls if p["forge"] == "github" and p["project"] == project
             and str(p["answer"]["number"]) == rest[1]),
            None,
        )
        if pull is None:
            return refuse(404, "Not Found", valid=True)
        number = pull["answer"]["number"]
        if rest[2:] == [] and method == "GET":
            return ok(200, self.pull_answer(pull))
        if rest[2:] == [] and method == "PATCH":
            if body.get("state") == "closed":
                pull["closed"] = True
            return ok(200, self.pull_answer(pull))
        if rest[2:] == ["merge"]:
            return self.merge(project, pull, body, user, refuse, ok)
        if rest[2:] == ["reviews"] and method == "GET":
            return ok(200, [r for r in forge.reviews if r["number"] == (project, number)])
        if rest[2:] == ["reviews"]:
            states = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
            if body.get("event") not in states:
                return refuse(422, "Unprocessable Entity: a pending review is not kept here")
            review = {
                "id": forge.next_id(),
                "number": (project, number),
                "user": {"login": user["login"]},
                "body": body.get("body", ""),
                "state": states[body["event"]],
                "commit_id": body.get("commit_id") or forge.tip(project, pull["head"]),
                "submitted_at": now(),
            }
            for comment in body.get("comments", []):
                self.add_comment(project, number, review, comment, user)
            forge.reviews.append(review)
            return ok(200, review)
        if rest[2:] == ["comments"] and method == "GET":
            return ok(200, [c for c in forge.comments if c.get("number") == (project, number)])
        if rest[2:3] == ["comments"] and rest[4:] == ["replies"]:
            top = next((c for c in forge.comments if str(c.get("id")) == rest[3] and "number" in c), None)
            if top is None:
                return refuse(404, "Not Found", valid=True)
            reply = dict(top, id=forge.next_id(), body=body["body"], in_reply_to_id=top["id"],
                         user={"login": user["login"]}, created_at=now())
            forge.comments.append(reply)
            return ok(201, reply)
        return refuse(404, "Not Found: the double does not answer this call", valid=True)

    def add_comment(self, project, number, review, comment, user):
        self.forge.comments.append({
            "id": self.forge.next_id(),
            "number": (project, number),
            "pull_request_review_id": review["id"],
            "commit_id": review["commit_id"],
            "path": comment["path"],
            "line": comment.get("line"),
            "body": comment["body"],
            "in_reply_to_id": None,
            "user": {"login": user["login"]},
            "created_at": now(),
        })

    def pull_answer(self, pull):
        """A pull request as GitHub answers it now: merged by the forge's
        merge, or as GitHub marks one whose head commit reaches its base by
        a push; closed by a person."""
        forge = self.forge
        answer = dict(pull["answer"])
        head = forge.tip(pull["project"], pull["head"])
        answer["head"] = {"ref": pull["head"], "sha": head}
        if "merge_commit_sha" not in pull and not pull.get("closed") and head and forge.merged(
            pull["project"], pull["head"], pull["base"]
        ):
            pull["merge_commit_sha"] = head
        merged = "merge_commit_sha" in pull
        if merged:
            answer["merged_at"] = pull.setdefault("merged_at", now())
        answer["merged"] = merged
        answer["merge_commit_sha"] = pull.get("merge_commit_sha")
        answer["state"] = "closed" if merged or pull.get("closed") else "open"
        return answer

    def open_pull(self, project, body, refuse):
        forge = self.forge
        if not forge.has_branch(project, body["base"]):
            return refuse(422, "Validation Failed", valid=True)
        if not forge.has_branch(project, body["head"]):
            return refuse(422, "Validation Failed: head does not exist", valid=True)
        with forge.lock:
            number = len(forge.pulls) + 1
            answer = {
                "number": number,
                "html_url": f"https://github.example/{project}/pull/{number}",
                "state": "open",
                "title": body["title"],
                "body": body.get("body"),
                "head": {"ref": body["head"]},
                "base": {"ref": body["base"]},
            }
            forge.pulls.append(
                {
                    "forge": "github",
                    "project": project,
                    "head": body["head"],
                    "base": body["base"],
                    "answer": answer,
                }
            )
        forge.record("github", "POST", self.path, True)
        self.answer(201, answer)

    def merge(self, project, pull, body, user, refuse, ok):
        """Merges as GitHub does, in the git server's repository: a merge
        commit, a squash or a rebase (here: a fast-forward, when the head
        is on the base), once the settings allow the method, the head is
        the one asked for, and the approvals branch protection wants are
        in."""
        forge = self.forge
        answer = self.pull_answer(pull)
        if answer["state"] != "open":
            return refuse(405, "Pull Request is not mergeable", valid=True)
        method = body.get("merge_method", "merge")
        settings = forge.settings.get(project, {})
        if not settings.get(f"allow_{'merge_commit' if method == 'merge' else method + '_merge'}", True):
            said = {"merge": "Merge commits", "squash": "Squash merges", "rebase": "Rebase merges"}
            return refuse(405, f"{said[method]} are not allowed on this repository.", valid=True)
        head = answer["head"]["sha"]
        if body.get("sha") and body["sha"] != head:
            return refuse(409, "Head branch was modified. Review and try the merge again.", valid=True)
        needed = settings.get("required_approvals", 0)
        last = {}
        for review in forge.reviews:
            if review["number"] == (project, pull["answer"]["number"]) and review["state"] != "COMMENTED":
                last[review["user"]["login"]] = review["state"]
        approvals = sum(1 for s in last.values() if s == "APPROVED")
        if approvals < needed or "CHANGES_REQUESTED" in last.values() and needed:
            return refuse(
                405,
                f"At least {needed} approving review is required by reviewers with write access.",
                valid=True,
            )
        base = forge.tip(project, pull["base"])
        title = body.get("commit_title") or f"Merge pull request #{pull['answer']['number']}"
        env = dict(
            os.environ,
            GIT_AUTHOR_NAME=user["login"], GIT_AUTHOR_EMAIL="noreply@github.example",
            GIT_COMMITTER_NAME="GitHub", GIT_COMMITTER_EMAIL="noreply@github.example",
        )
        if method == "rebase":
            if forge.git(project, "merge-base", "--is-ancestor", base, head).returncode != 0:
                return refuse(405, "This branch can't be rebased", valid=True)
            commit = head
        else:
            tree = forge.git(project, "merge-tree", "--write-tree", base, head)
            if tree.returncode != 0:
                return refuse(405, "Pull Request is not mergeable", valid=True)
            parents = ["-p", base] + (["-p", head] if method == "merge" else [])
            made = forge.git(
                project, "commit-tree", tree.stdout.split()[0], *parents, "-m", title, env=env
            )
            commit = made.stdout.strip()
        moved = forge.git(project, "update-ref", f"refs/heads/{pull['base']}", commit, base)
        if moved.returncode != 0:
            return refuse(409, "Base branch was modified. Review and try the merge again.", valid=True)
        pull["merge_commit_sha"] = commit
        return ok(200, {"sha": commit, "merged": True, "message": "Pull Request successfully merged"})

    # ------------------------------------------------------------- GitLab

    def gitlab(self, method, url, data):
        forge = self.forge
        refuse = lambda status, message, valid=False: (
            forge.record("gitlab", method, self.path, valid, message),
            self.answer(status, {"message": message}),
        )
        token = self.headers.get("private-token") or (
            self.headers.get("authorization") or ""
        ).removeprefix("Bearer ")
        user = forge.users.get(token)
        if user is None:
            return refuse(401, "401 Unauthorized", valid=True)
        # /api/v4/projects/:id/..., :id a number or the project's URL-encoded
        # path.
        parts = url.path.split("/")
        if len(parts) < 5 or parts[3] != "projects":
            return refuse(404, "404 Not Found: not a projects call")
        raw_id = parts[4]
        if "/" in raw_id or not raw_id:
            return refuse(404, "404 Project Not Found: the path must be URL-encoded")
        project = urllib.parse.unquote(raw_id)
        rest = parts[5:]
        args = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        ok = lambda status, answer: (
            forge.record("gitlab", method, self.path, True),
            self.answer(status, answer),
        )
        body = {}
        if method in ("POST", "PUT"):
            content_type = self.headers.get("content-type") or ""
            if content_type.startswith("application/json"):
                body = json.loads(data or b"{}")
            elif content_type.startswith("application/x-www-form-urlencoded"):
                body = dict(urllib.parse.parse_qsl(data.decode()))
            elif data:
                return refuse(415, "415 Unsupported Media Type")
        if not rest and method == "GET":
            settings = forge.settings.get(project, {})
            return ok(200, {
                "path_with_namespace": project,
                "merge_method": settings.get("merge_method", "merge"),
                "squash_option": settings.get("squash_option", "default_off"),
                "only_allow_merge_if_pipeline_succeeds": True,
                "only_allow_merge_if_all_discussions_are_resolved":
                    settings.get("only_allow_merge_if_all_discussions_are_resolved", False),
            })
        if rest == ["pipelines"] and method == "GET":
            sha = args.get("sha", "")
            return ok(200, [self.pipeline(project, sha)] if sha and forge.ci.get(project) else [])
        if len(rest) == 3 and rest[0] == "pipelines" and rest[2] == "jobs":
            jobs = [
                j for sha in {k[1] for k in forge.runs if k[0] == project}
                if str(self.pipeline(project, sha)["id"]) == rest[1]
                for j in self.jobs(project, sha)
            ]
            scope = args.get("scope[]")
            return ok(200, [j for j in jobs if not scope or j["status"] == scope])
        if len(rest) == 3 and rest[0] == "jobs" and rest[2] == "trace":
            for runs in list(forge.runs.values()):
                for run in runs.values():
                    if str(run["id"]) == rest[1]:
                        forge.record("gitlab", method, self.path, True)
                        text = (run["output"]["text"] or "").encode()
                        self.send_response(200)
                        self.send_header("content-type", "text/plain")
                        self.send_header("content-length", str(len(text)))
                        self.end_headers()
                        return self.wfile.write(text)
            return refuse(404, "404 Job Not Found", valid=True)
        if len(rest) == 3 and rest[:2] == ["members", "all"] and method == "GET":
            # GitLab's access levels: Guest 10, Reporter 20, Developer 30,
            # Maintainer 40, Owner 50.
            levels = {"read": 20, "triage": 20, "write": 30, "maintain": 40, "admin": 50}
            found = next((u for u in forge.users.values() if str(u.get("id")) == rest[2]), None)
            if found is None:
                return refuse(404, "404 Not found", valid=True)
            return ok(200, {
                "id": found["id"], "username": found["login"], "state": "active",
                "access_level": levels.get(found["permission"], 10),
            })
        if len(rest) == 3 and rest[0] == "issues" and rest[2] == "notes":
            return self.notes(("issue", project, rest[1]), method, body, user, refuse, ok)
        if rest == ["merge_requests"] and method == "GET":
            if args.get("state") not in (None, "opened", "closed", "locked", "merged", "all"):
                return refuse(400, "state does not have a valid value")
            found = [
                self.request_answer(p)
                for p in forge.pulls
                if p["forge"] == "gitlab"
                and p["project"] == project
                and (not args.get("source_branch") or p["head"] == args["source_branch"])
                and (not args.get("target_branch") or p["base"] == args["target_branch"])
            ]
            wanted = args.get("state", "all")
            return ok(200, [p for p in found if wanted in ("all", p["state"])])
        if rest == ["merge_requests"]:
            return self.open_request(project, body, refuse)
        if len(rest) < 2 or rest[0] != "merge_requests":
            return refuse(404, "404 Not Found: the double does not answer this call")
        pull = next(
            (p for p in forge.pulls if p["forge"] == "gitlab" and p["project"] == project
             and str(p["answer"]["iid"]) == rest[1]),
            None,
        )
        if pull is None:
            return refuse(404, "404 Not found", valid=True)
        if rest[2:] == [] and method == "GET":
            return ok(200, self.request_answer(pull))
        if rest[2:] == [] and method == "PUT":
            if body.get("state_event") not in (None, "close", "reopen"):
                return refuse(400, "state_event does not have a valid value")
            pull["closed"] = body.get("state_event") == "close"
            return ok(200, self.request_answer(pull))
        if rest[2:] == ["merge"] and method == "PUT":
            known = {"merge_commit_message", "squash_commit_message", "squash",
                     "should_remove_source_branch", "merge_when_pipeline_succeeds",
                     "auto_merge", "sha"}
            unknown = sorted(set(body) - known)
            if unknown:
                return refuse(400, f"unknown attributes: {unknown}")
            return self.merge_request(project, pull, body, user, refuse, ok)
        if rest[2:] == ["notes"]:
            return self.notes(("merge_request", project, rest[1]), method, body, user, refuse, ok)
        if rest[2:] == ["discussions"] and method == "GET":
            return ok(200, [d for d in forge.comments if d.get("request") == (project, pull["answer"]["iid"])])
        if rest[2:] == ["discussions"] and method == "POST":
            if not isinstance(body.get("body"), str) or not body["body"]:
                return refuse(400, "body is missing")
            position = body.get("position")
            if position is not None:
                for required in ("base_sha", "start_sha", "head_sha", "position_type"):
                    if not position.get(required):
                        return refuse(400, f"position[{required}] is missing")
            note = self.note(body["body"], user, position)
            discussion = {
                "id": f"{forge.next_id():040x}",
                "request": (project, pull["answer"]["iid"]),
                "individual_note": position is None,
                "notes": [note],
            }
            forge.comments.append(discussion)
            return ok(201, discussion)
        if len(rest) == 5 and rest[2] == "discussions" and rest[4] == "notes" and method == "POST":
            discussion = next((d for d in forge.comments if d.get("id") == rest[3]), None)
            if discussion is None:
                return refuse(404, "404 Discussion Not Found", valid=True)
            if not isinstance(body.get("body"), str) or not body["body"]:
                return refuse(400, "body is missing")
            note = self.note(body["body"], user, None)
            note["resolvable"] = discussion["notes"][0]["resolvable"]
            discussion["notes"].append(note)
            return ok(201, note)
        return refuse(404, "404 Not Found: the double does not answer this call")

    def notes(self, noteable, method, body, user, refuse, ok):
        """The notes on an issue or a merge request (`noteable`): listed,
        or one added, as GitLab's notes API has them."""
        if method == "GET":
            return ok(200, [n for (on, n) in self.forge.notes if on == noteable])
        if method != "POST":
            return refuse(405, "405 Method Not Allowed")
        if not isinstance(body.get("body"), str) or not body["body"]:
            return refuse(400, "body is missing")
        note = self.note(body["body"], user, None)
        with self.forge.lock:
            self.forge.notes.append((noteable, note))
        return ok(201, note)

    def note(self, body, user, position):
        return {
            "id": self.forge.next_id(),
            "body": body,
            "author": {"username": user["login"]},
            "created_at": now(),
            "position": position,
            "resolvable": position is not None,
            "resolved": False,
        }

    def pipeline(self, project, sha):
        """The pipeline GitLab runs for `sha`: the project's CI, its jobs
        the double's checks on the commit."""
        jobs = self.jobs(project, sha)
        statuses = {j["status"] for j in jobs}
        status = (
            "running" if statuses & {"pending", "running"}
            else "failed" if "failed" in statuses
            else "success"
        )
        ident = min(j["id"] for j in jobs) + 500000
        return {
            "id": ident,
            "iid": ident,
            "sha": sha,
            "status": status,
            "web_url": f"https://gitlab.example/{project}/-/pipelines/{ident}",
        }

    def jobs(self, project, sha):
        runs = self.forge.check_runs(project, sha)
        status = {"queued": "pending", "in_progress": "running"}
        return [
            {
                "id": r["id"],
                "name": r["name"],
                "stage": "test",
                "status": status.get(r["status"])
                or ("success" if r["conclusion"] == "success" else "failed"),
                "web_url": f"https://gitlab.example/{project}/-/jobs/{r['id']}",
            }
            for r in runs
        ]

    def request_answer(self, pull):
        """A merge request as GitLab answers it now: merged by the forge's
        merge, or by a push that put its head on the target branch; closed
        by a person."""
        forge = self.forge
        answer = dict(pull["answer"])
        head = forge.tip(pull["project"], pull["head"])
        answer["sha"] = head
        if "merge_commit_sha" not in pull and not pull.get("closed") and head and forge.merged(
            pull["project"], pull["head"], pull["base"]
        ):
            pull["merge_commit_sha"] = head
        merged = "merge_commit_sha" in pull
        answer["merge_commit_sha"] = pull.get("merge_commit_sha")
        answer["squash_commit_sha"] = pull.get("squash_commit_sha")
        answer["state"] = "merged" if merged else "closed" if pull.get("closed") else "opened"
        return answer

    def open_request(self, project, body, refuse):
        forge = self.forge
        # Required attributes, per the documentation: source_branch,
        # target_branch, title, all strings.
        for required in ("source_branch", "target_branch", "title"):
            if not isinstance(body.get(required), str) or not body[required]:
                return refuse(400, f"{required} is missing")
        known = {
            "source_branch", "target_branch", "title", "description", "assignee_id",
            "assignee_ids", "reviewer_ids", "labels", "milestone_id", "remove_source_branch",
            "allow_collaboration", "squash", "target_project_id", "approvals_before_merge",
        }
        unknown = sorted(set(body) - known)
        if unknown:
            return refuse(400, f"unknown attributes: {unknown}")
        if not forge.has_branch(project, body["target_branch"]):
            return refuse(404, "404 Branch Not Found", valid=True)
        if not forge.has_branch(project, body["source_branch"]):
            return refuse(404, "404 Branch Not Found", valid=True)
        with forge.lock:
            iid = len(forge.pulls) + 1
            answer = {
                "iid": iid,
                "web_url": f"https://gitlab.example/{project}/-/merge_requests/{iid}",
                "state": "opened",
                "title": body["title"],
                "source_branch": body["source_branch"],
                "target_branch": body["target_branch"],
            }
            forge.pulls.append(
                {
                    "forge": "gitlab",
                    "project": project,
                    "head": body["source_branch"],
                    "base": body["target_branch"],
                    "answer": answer,
                }
            )
        forge.record("gitlab", "POST", self.path, True)
        self.answer(201, answer)

    def merge_request(self, project, pull, body, user, refuse, ok):
        """Merges as GitLab does: refused (405) while its pipeline has not
        succeeded or (when the project asks) a thread is unresolved, 409
        when `sha` is not its head; a merge commit, or one squashed commit
        when asked (and the project's squash option allows)."""
        forge = self.forge
        answer = self.request_answer(pull)
        if answer["state"] != "opened":
            return refuse(405, "405 Method Not Allowed", valid=True)
        head = answer["sha"]
        if body.get("sha") and body["sha"] != head:
            return refuse(409, "SHA does not match HEAD of source branch", valid=True)
        settings = forge.settings.get(project, {})
        squash = body.get("squash") in (True, "true")
        if squash and settings.get("squash_option") == "never":
            return refuse(405, "Squashing is not allowed in this project", valid=True)
        if forge.ci.get(project) and self.pipeline(project, head)["status"] != "success":
            return refuse(405, "405 Method Not Allowed: the pipeline has not succeeded", valid=True)
        if settings.get("only_allow_merge_if_all_discussions_are_resolved") and any(
            d.get("request") == (project, pull["answer"]["iid"])
            and d["notes"][0]["resolvable"] and not d["notes"][0]["resolved"]
            for d in forge.comments
        ):
            return refuse(405, "405 Method Not Allowed: unresolved threads", valid=True)
        base = forge.tip(project, pull["base"])
        env = dict(
            os.environ,
            GIT_AUTHOR_NAME=user["login"], GIT_AUTHOR_EMAIL="noreply@gitlab.example",
            GIT_COMMITTER_NAME="GitLab", GIT_COMMITTER_EMAIL="noreply@gitlab.example",
        )
        tree = forge.git(project, "merge-tree", "--write-tree", base, head)
        if tree.returncode != 0:
            return refuse(406, "Branch cannot be merged", valid=True)
        message = body.get("squash_commit_message") or body.get("merge_commit_message") or "Merge"
        parents = ["-p", base] + ([] if squash else ["-p", head])
        made = forge.git(project, "commit-tree", tree.stdout.split()[0], *parents, "-m", message, env=env)
        commit = made.stdout.strip()
        moved = forge.git(project, "update-ref", f"refs/heads/{pull['base']}", commit, base)
        if moved.returncode != 0:
            return refuse(406, "Branch cannot be merged", valid=True)
        # The marker of a merged request, whichever commit made it.
        pull["merge_commit_sha"] = commit
        if squash:
            pull["squash_commit_sha"] = commit
        return ok(200, self.request_answer(pull))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--repos", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()
    Handler.forge = Forge(args.spec, args.repos, token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".part", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.replace(args.port_file + ".part", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
