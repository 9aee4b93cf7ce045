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
"""

import argparse
import datetime
import json
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest

GITHUB = "https://api.github.com"
PULLS = "/repos/{owner}/{repo}/pulls"


def github_description(path):
    """GitHub's description of the pull request calls, unchanged: the
    other paths are left out so it loads in a second, not thirty."""
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    spec["paths"] = {k: v for k, v in spec["paths"].items() if k.startswith(PULLS)}
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
        self.route("POST", self.body())

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
        if self.headers.get("authorization") != f"Bearer {forge.token}":
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
        if method == "GET":
            head = args.get("head", "")
            found = []
            for p in forge.pulls:
                if not (
                    p["forge"] == "github"
                    and p["project"] == project
                    and (not head or f"{owner}:{p['head']}" == head)
                    and (not args.get("base") or p["base"] == args["base"])
                ):
                    continue
                answer = dict(p["answer"])
                if forge.merged(project, p["head"], p["base"]):
                    answer["state"] = "closed"
                    answer["merged_at"] = p.setdefault("merged_at", now())
                # GitHub lists the open ones unless asked for others.
                if args.get("state", "open") in ("all", answer["state"]):
                    found.append(answer)
            forge.record("github", method, self.path, True)
            return self.answer(200, found)
        body = json.loads(data)
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
        forge.record("github", method, self.path, True)
        self.answer(201, answer)

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
        if token != forge.token:
            return refuse(401, "401 Unauthorized", valid=True)
        # /api/v4/projects/:id/merge_requests, :id a number or the project's
        # URL-encoded path.
        parts = url.path.split("/")
        if len(parts) != 6 or parts[3] != "projects" or parts[5] != "merge_requests":
            return refuse(404, "404 Not Found: not a merge requests call")
        raw_id = parts[4]
        if "/" in raw_id or not raw_id:
            return refuse(404, "404 Project Not Found: the path must be URL-encoded")
        project = urllib.parse.unquote(raw_id)
        args = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if method == "GET":
            if args.get("state") not in (None, "opened", "closed", "locked", "merged", "all"):
                return refuse(400, "state does not have a valid value")
            found = [
                p
                for p in forge.pulls
                if p["forge"] == "gitlab"
                and p["project"] == project
                and (not args.get("source_branch") or p["head"] == args["source_branch"])
                and (not args.get("target_branch") or p["base"] == args["target_branch"])
            ]
            forge.record("gitlab", method, self.path, True)
            return self.answer(200, [p["answer"] for p in found])
        content_type = self.headers.get("content-type") or ""
        if content_type.startswith("application/json"):
            body = json.loads(data)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            body = dict(urllib.parse.parse_qsl(data.decode()))
        else:
            return refuse(415, "415 Unsupported Media Type")
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
        forge.record("gitlab", method, self.path, True)
        self.answer(201, answer)


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
    import os

    os.replace(args.port_file + ".part", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
