"""A small Hugging Face Hub for tests, on 127.0.0.1: what the real client's uploads need.

No installable server accepts huggingface_hub's uploads, so this one implements the endpoints
the client (2.x, with HF_HUB_DISABLE_XET=1) calls, as its code reads them (hf_api.py,
_commit_api.py, lfs.py, file_download.py):

    POST /api/repos/create                              create_repo (409 if it exists); models
                                                        and Spaces (/api/spaces/..., /spaces/...)
    POST /api/validate-yaml                             README.md metadata check before a commit
    POST /api/models/{repo}/branch/{branch}             create_branch
    POST /api/models/{repo}/preupload/{rev}             which files go through LFS
    POST /{repo}.git/info/lfs/objects/batch             LFS batch: an upload URL per new object
    PUT  /lfs-upload/{ticket}                           the object's bytes (checked: SHA-256, size)
    POST /{repo}.git/info/lfs/objects/verify            LFS verify
    POST /api/models/{repo}/commit/{rev}                the NDJSON commit
    GET  /api/models/{repo}[/revision/{rev}]            repo info (sha, siblings)
    GET  /api/models/{repo}/tree/{rev}[/{path}]         file listing (snapshot_download)
    HEAD|GET /{repo}/resolve/{rev}/{path}               download, with X-Repo-Commit, ETag and,
                                                        for LFS files, X-Linked-Etag/-Size

Writes need a known token (401 otherwise, so "no token" fails as on the Hub); private repos
are invisible without one. Errors carry the X-Error-Code headers the client maps to its
exceptions (RepoNotFound, RevisionNotFound, EntryNotFound). State lives in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from typing_extensions import Self

from .git_objects import GITATTRIBUTES, LfsPointer, git_blob_oid, is_lfs_path

#: Regular files larger than this go through LFS whatever their name (as on the Hub).
REGULAR_FILE_LIMIT = 10 * 2**20
REPO = r"(?P<repo>[^/]+/[^/]+)"
KIND = r"(?P<kind>models|spaces)"


@dataclass(frozen=True)
class StoredFile:
    """A file in a commit: its git id, and for LFS files the object's SHA-256."""

    size: int
    git_oid: str  #: id of the git blob (of the pointer, for LFS files)
    sha256: str | None = None
    pointer_size: int | None = None

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_id: str
    private: bool
    sdk: str | None = None  #: a Space's SDK (gradio, ...); None for models
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """A branch name or a full commit id (what the client sends in URLs)."""
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    token: str | None
    status: int


class HttpError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}


class HubState:
    """Repositories, stored bytes and the request log, behind one lock."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = dict(tokens)  #: token → user name
        self.repos: dict[str, Repo] = {}
        self.spaces: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  #: git oid → content of regular files
        self.lfs: dict[str, bytes] = {}  #: sha256 → content of LFS objects
        self.tickets: dict[str, tuple[str, int]] = {}  #: upload ticket → (sha256, size)
        self.requests: list[RequestRecord] = []
        self.lock = threading.Lock()

    def content(self, stored: StoredFile) -> bytes:
        return self.lfs[stored.sha256] if stored.is_lfs else self.blobs[stored.git_oid]

    def add_commit(
        self, repo: Repo, branch: str, message: str, files: dict[str, StoredFile]
    ) -> Commit:
        parent = repo.branches.get(branch)
        listing = json.dumps(
            [parent, message, sorted((p, f.git_oid) for p, f in files.items()), len(repo.commits)]
        )
        commit = Commit(hashlib.sha1(listing.encode()).hexdigest(), parent, message, dict(files))
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def store_regular(self, data: bytes) -> StoredFile:
        oid = git_blob_oid(data)
        self.blobs[oid] = data
        return StoredFile(len(data), oid)


class HubTestServer:
    """The test Hub, serving in a background thread; use as a context manager."""

    def __init__(self, tokens: dict[str, str] | None = None):
        self.state = HubState(tokens if tokens is not None else {"hf_test_write_token": "tester"})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="hub-test-server", daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- the endpoints ---------------------------------------------------------------------------
    def create_repo(self, body: dict, user: str) -> tuple[int, dict]:
        kind = body.get("type", "model")
        if kind not in ("model", "space"):
            raise HttpError(400, "this test Hub serves model and Space repositories only")
        if kind == "space" and not body.get("sdk"):
            raise HttpError(400, "a Space needs an SDK (gradio, docker or static)")
        repos = self.state.spaces if kind == "space" else self.state.repos
        name = body.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
            raise HttpError(400, f"invalid repository name {name!r}")
        repo_id = f"{body.get('organization') or user}/{name}"
        url = f"{self.url}/{'spaces/' if kind == 'space' else ''}{repo_id}"
        if repo_id in repos:
            raise HttpError(
                409, f"You already created this {kind} repo", headers={"X-Error-Url": url}
            )
        private = body.get("visibility") == "private" or body.get("private") is True
        repo = repos[repo_id] = Repo(repo_id, private, body.get("sdk") if kind == "space" else None)
        attributes = self.state.store_regular(GITATTRIBUTES.encode())
        self.state.add_commit(repo, "main", "initial commit", {".gitattributes": attributes})
        return 200, {"url": url, "name": repo_id}

    def validate_yaml(self, body: dict) -> tuple[int, dict]:
        content = body.get("content", "")
        match = re.match(r"---\n(.*?)\n---\n", content, flags=re.DOTALL)
        if match is None:
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]}
        try:
            data = yaml.safe_load(match.group(1))
        except yaml.YAMLError as e:
            return 400, {"errors": [{"message": f"invalid YAML: {e}"}]}
        if not isinstance(data, dict):
            return 400, {"errors": [{"message": "the metadata must be a YAML mapping"}]}
        return 200, {"errors": [], "warnings": []}

    def create_branch(self, repo: Repo, branch: str, body: dict) -> tuple[int, dict]:
        if branch in repo.branches:
            raise HttpError(409, f"branch {branch!r} already exists")
        start = repo.resolve(body.get("startingPoint") or "main")
        if start is None:
            raise HttpError(404, f"Invalid rev id: {body.get('startingPoint')}", "RevisionNotFound")
        repo.branches[branch] = start.oid
        return 200, {}

    def preupload(self, repo: Repo, commit: Commit, body: dict) -> tuple[int, dict]:
        files = []
        for item in body.get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = is_lfs_path(path) or size > REGULAR_FILE_LIMIT
            existing = commit.files.get(path)
            oid = (
                None
                if existing is None
                else (existing.sha256 if existing.is_lfs else existing.git_oid)
            )
            files.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        return 200, {"files": files, "commitOid": commit.oid}

    def lfs_batch(self, repo: Repo, body: dict) -> tuple[int, dict]:
        if body.get("operation") != "upload":
            raise HttpError(400, "this test Hub implements only LFS uploads")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.state.lfs:
                ticket = hashlib.sha256(
                    f"{repo.repo_id}/{oid}/{len(self.state.tickets)}".encode()
                ).hexdigest()
                self.state.tickets[ticket] = (oid, size)
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-upload/{ticket}"},
                    "verify": {"href": f"{self.url}/{repo.repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_put(self, ticket: str, data: bytes) -> tuple[int, dict]:
        expected = self.state.tickets.pop(ticket, None)
        if expected is None:
            raise HttpError(403, "unknown or used upload URL")
        pointer = LfsPointer.of(data)
        if (pointer.sha256, pointer.size) != expected:
            raise HttpError(400, f"uploaded bytes do not match the announced object {expected}")
        self.state.lfs[pointer.sha256] = data
        return 200, {}

    def lfs_verify(self, body: dict) -> tuple[int, dict]:
        data = self.state.lfs.get(body.get("oid"))
        if data is None or len(data) != body.get("size"):
            raise HttpError(404, f"LFS object {body.get('oid')} was not uploaded")
        return 200, {}

    def commit(self, repo: Repo, branch: str, lines: list[dict]) -> tuple[int, dict]:
        if branch not in repo.branches:
            raise HttpError(
                404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound"
            )
        if not lines or lines[0].get("key") != "header":
            raise HttpError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != repo.branches[branch]:
            raise HttpError(412, f"parent commit {parent} is not the head of {branch}")
        files = dict(repo.commits[repo.branches[branch]].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path")
            if key == "file":
                files[path] = self.state.store_regular(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                data = self.state.lfs.get(value.get("oid"))
                if data is None:
                    raise HttpError(
                        422, f"{path}: LFS object {value.get('oid')} was never uploaded"
                    )
                pointer = LfsPointer.of(data)
                files[path] = StoredFile(
                    len(data), git_blob_oid(pointer.blob()), pointer.sha256, len(pointer.blob())
                )
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HttpError(
                        404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                    )
            elif key == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(path.rstrip("/") + "/")}
            else:
                raise HttpError(400, f"unknown commit operation {key!r}")
        message = header.get("summary", "") + (
            "\n\n" + header["description"] if header.get("description") else ""
        )
        commit = self.state.add_commit(repo, branch, message, files)
        return 200, {
            "commitUrl": f"{self.url}/{repo.repo_id}/commit/{commit.oid}",
            "commitOid": commit.oid,
            "success": True,
            "pullRequestUrl": None,
        }

    def repo_info(self, repo: Repo, commit: Commit) -> tuple[int, dict]:
        return 200, {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": commit.oid,
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            "tags": [],
        }

    def tree(self, commit: Commit, path: str, recursive: bool) -> tuple[int, list]:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        entries, folders = [], set()
        for name, stored in sorted(commit.files.items()):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/", 1)[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            entry = {"type": "file", "oid": stored.git_oid, "size": stored.size, "path": name}
            if stored.is_lfs:
                entry["lfs"] = {
                    "oid": stored.sha256,
                    "size": stored.size,
                    "pointerSize": stored.pointer_size,
                }
            entries.append(entry)
        if prefix and not entries and not folders:
            raise HttpError(404, f"{path} does not exist", "EntryNotFound")
        dirs = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(folders)
        ]
        return 200, dirs + entries


def _handler_for(hub: HubTestServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `hub` (http.server builds one handler per request)."""

    routes: list[tuple[str, re.Pattern, str]] = [
        ("POST", re.compile(r"/api/repos/create"), "create"),
        ("POST", re.compile(r"/api/validate-yaml"), "validate"),
        ("POST", re.compile(rf"/api/{KIND}/{REPO}/branch/(?P<rev>[^/]+)"), "branch"),
        ("POST", re.compile(rf"/api/{KIND}/{REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
        ("POST", re.compile(rf"/api/{KIND}/{REPO}/commit/(?P<rev>[^/]+)"), "commit"),
        ("POST", re.compile(rf"/{REPO}\.git/info/lfs/objects/batch"), "lfs_batch"),
        ("POST", re.compile(rf"/{REPO}\.git/info/lfs/objects/verify"), "lfs_verify"),
        ("PUT", re.compile(r"/lfs-upload/(?P<ticket>[0-9a-f]{64})"), "lfs_put"),
        ("GET", re.compile(rf"/api/{KIND}/{REPO}(?:/revision/(?P<rev>[^/]+))?"), "info"),
        ("GET", re.compile(rf"/api/{KIND}/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "tree"),
        (
            "GET",
            re.compile(rf"(?:/(?P<kind>spaces))?/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
            "resolve",
        ),
        (
            "HEAD",
            re.compile(rf"(?:/(?P<kind>spaces))?/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
            "resolve",
        ),
    ]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr
            pass

        def do_GET(self) -> None:
            self._dispatch()

        def do_HEAD(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def do_PUT(self) -> None:
            self._dispatch()

        # -- plumbing ----------------------------------------------------------------------------
        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            status = 500
            try:
                body = self._read_body()
                for method, pattern, name in routes:
                    match = pattern.fullmatch(url.path)
                    if method == self.command and match:
                        params = {
                            k: unquote(v) for k, v in match.groupdict().items() if v is not None
                        }
                        with hub.state.lock:
                            status = getattr(self, f"_{name}")(params, body, parse_qs(url.query))
                        break
                else:
                    raise HttpError(404, f"no such endpoint: {self.command} {url.path}")
            except HttpError as e:
                status = e.status
                headers = {"X-Error-Message": e.message, **e.headers}
                if e.code:
                    headers["X-Error-Code"] = e.code
                self._send_json(e.status, {"error": e.message}, headers)
            except Exception as e:  # noqa: BLE001 - a bug in this server: answer, and leave a 500 in the log
                self._send_json(500, {"error": f"test Hub failed: {e!r}"})
            finally:
                with hub.state.lock:
                    hub.state.requests.append(
                        RequestRecord(self.command, url.path, self._token(), status)
                    )

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    chunk = self.rfile.read(size)
                    self.rfile.readline()
                    if size == 0:
                        return b"".join(chunks)
                    chunks.append(chunk)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _send_json(self, status: int, payload: Any, headers: dict | None = None) -> int:
            self._send(
                status,
                json.dumps(payload).encode(),
                {"Content-Type": "application/json", **(headers or {})},
            )
            return status

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None

        def _user(self, required: bool) -> str | None:
            """The token's user; 401 for an unknown token, or for none when `required`."""
            token = self._token()
            if token is None:
                if required:
                    raise HttpError(
                        401, "You must be authenticated (send a token) to write to the Hub"
                    )
                return None
            user = hub.state.tokens.get(token)
            if user is None:
                raise HttpError(401, "Invalid credentials in Authorization header")
            return user

        def _repo(self, params: dict, write: bool = False) -> Repo:
            user = self._user(required=write)
            repos = hub.state.spaces if params.get("kind") == "spaces" else hub.state.repos
            repo = repos.get(params["repo"])
            if repo is None or (repo.private and user is None):
                raise HttpError(401, "Repository not found", "RepoNotFound")
            return repo

        def _revision(self, repo: Repo, revision: str) -> Commit:
            commit = repo.resolve(revision)
            if commit is None:
                raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return commit

        @staticmethod
        def _json(body: bytes) -> Any:
            try:
                return json.loads(body or b"{}")
            except json.JSONDecodeError as e:
                raise HttpError(400, f"the request body is not JSON ({e})") from None

        # -- routes ------------------------------------------------------------------------------
        def _create(self, params: dict, body: bytes, query: dict) -> int:
            return self._send_json(*hub.create_repo(self._json(body), self._user(required=True)))

        def _validate(self, params: dict, body: bytes, query: dict) -> int:
            return self._send_json(*hub.validate_yaml(self._json(body)))

        def _branch(self, params: dict, body: bytes, query: dict) -> int:
            return self._send_json(
                *hub.create_branch(self._repo(params, write=True), params["rev"], self._json(body))
            )

        def _preupload(self, params: dict, body: bytes, query: dict) -> int:
            repo = self._repo(params, write=True)
            return self._send_json(
                *hub.preupload(repo, self._revision(repo, params["rev"]), self._json(body))
            )

        def _lfs_batch(self, params: dict, body: bytes, query: dict) -> int:
            return self._send_json(*hub.lfs_batch(self._repo(params, write=True), self._json(body)))

        def _lfs_verify(self, params: dict, body: bytes, query: dict) -> int:
            self._repo(params, write=True)
            return self._send_json(*hub.lfs_verify(self._json(body)))

        def _lfs_put(self, params: dict, body: bytes, query: dict) -> int:
            # Like a pre-signed storage URL: the ticket in the path is the authorisation.
            return self._send_json(*hub.lfs_put(params["ticket"], body))

        def _commit(self, params: dict, body: bytes, query: dict) -> int:
            repo = self._repo(params, write=True)
            try:
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            except json.JSONDecodeError as e:
                raise HttpError(400, f"the commit payload is not NDJSON ({e})") from None
            return self._send_json(*hub.commit(repo, params["rev"], lines))

        def _info(self, params: dict, body: bytes, query: dict) -> int:
            repo = self._repo(params)
            return self._send_json(
                *hub.repo_info(repo, self._revision(repo, params.get("rev", "main")))
            )

        def _tree(self, params: dict, body: bytes, query: dict) -> int:
            repo = self._repo(params)
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._send_json(
                *hub.tree(self._revision(repo, params["rev"]), params.get("path", ""), recursive)
            )

        def _resolve(self, params: dict, body: bytes, query: dict) -> int:
            repo = self._repo(params)
            commit = self._revision(repo, params["rev"])
            stored = commit.files.get(params["path"])
            if stored is None:
                raise HttpError(
                    404,
                    f"{params['path']} does not exist at {commit.oid}",
                    "EntryNotFound",
                    {"X-Repo-Commit": commit.oid},
                )
            headers = {
                "Content-Type": "application/octet-stream",
                "X-Repo-Commit": commit.oid,
                "ETag": f'"{stored.git_oid}"',
                "Accept-Ranges": "bytes",
            }
            if stored.is_lfs:
                headers.update(
                    {"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(stored.size)}
                )
            data = hub.state.content(stored)
            start = _range_start(self.headers.get("Range"), len(data))
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self._send(206, data[start:], headers)
                return 206
            self._send(200, data, headers)
            return 200

    return Handler


def _range_start(header: str | None, size: int) -> int:
    """The first byte of a `Range: bytes=N-` request (the client resumes downloads this way)."""
    if not header:
        return 0
    match = re.fullmatch(r"bytes=(\d+)-", header.strip())
    if match is None or int(match.group(1)) >= size:
        raise HttpError(416, f"unsupported or unsatisfiable range {header!r}")
    return int(match.group(1))
