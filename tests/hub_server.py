"""A loopback Hugging Face Hub for tests: the HTTP API that `huggingface_hub` speaks.

No Hub-compatible server with upload support installs from the package registries, so this
one implements just what `create_repo`, `upload_folder`/`create_commit` (pre-upload, LFS
batch + basic transfer, the ndjson commit), `model_info`/`list_repo_tree`/`get_paths_info`
and `hf_hub_download`/`snapshot_download` use, as read from huggingface_hub 2.x
(`hf_api.py`, `_commit_api.py`, `lfs.py`, `file_download.py`):

    GET  /api/whoami-v2
    POST /api/repos/create                         {"name", "organization", "visibility", "type"}
    POST /api/validate-yaml                        {"content", "repoType"}
    GET  /api/{type}s/{org}/{name}[/revision/{rev}]  info with "sha" and "siblings"
    GET  /api/{type}s/{org}/{name}/refs
    GET  /api/{type}s/{org}/{name}/tree/{rev}[/{path}]?recursive=
    POST /api/{type}s/{org}/{name}/paths-info/{rev}  form: paths=..., expand=
    POST /api/{type}s/{org}/{name}/preupload/{rev} {"files": [{"path", "sample", "size"}]} -> uploadMode
    POST /{org}/{name}.git/info/lfs/objects/batch  git-lfs batch API, "basic" transfer
    PUT  /_lfs/upload/{sha256}  and  POST /_lfs/verify
    POST /api/{type}s/{org}/{name}/commit/{rev}    ndjson: header, file, lfsFile, deletedFile, deletedFolder
    HEAD/GET /[{type}s/]{org}/{name}/resolve/{rev}/{path}
        X-Repo-Commit, ETag (git blob id), X-Linked-Etag/X-Linked-Size (sha256/size of LFS files),
        Content-Length, Range; 404s carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound).

Files live content-addressed (sha256) under a folder; commits are in memory. Writes need
`Authorization: Bearer <token>`; private repos need it for reads too. LFS content is served
straight from /resolve (the real Hub redirects to a CDN host; huggingface_hub handles both).

    server = HubServer(tmp_dir, token="hf_test").start()   # http://127.0.0.1:<port>
    ...
    server.stop()

`python tests/hub_server.py DIR` runs one in the foreground (prints its URL) for manual use.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import hashlib
import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub stores files >= 10 MB in LFS whatever .gitattributes says
# What the Hub puts in a new repo's first commit (abridged): binary weights and images go to LFS.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in ("*.bin", "*.ckpt", "*.h5", "*.npy", "*.npz", "*.onnx", "*.pkl", "*.pt", "*.pth",
                    "*.safetensors", "*.msgpack", "*.tar.*", "*.zip", "*.png", "*.jpg", "*.gif", "*tfevents*")
)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One file of a commit's tree."""

    sha256: str  # of the content (the key in the object store)
    size: int
    lfs: bool

    @property
    def oid(self) -> str:
        """The git blob id: of the content, or of the LFS pointer for LFS files."""
        return git_blob_id(lfs_pointer(self.sha256, self.size)) if self.lfs else self._content_oid

    _content_oid: str = ""

    def tree_json(self, path: str) -> dict:
        out = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.lfs:
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(lfs_pointer(self.sha256, self.size))}
        return out


@dataclasses.dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    date: str
    tree: dict[str, Entry]


@dataclasses.dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, str]
    commits: dict[str, Commit]
    created: str


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubState:
    """Repos, commits and the object store; every method holds the lock."""

    def __init__(self, root: str | Path, token: str, user: str = "tester", orgs: tuple[str, ...] = ("org",)):
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        self.token, self.user, self.orgs = token, user, orgs
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []  # (method, path) log, for tests

    # ---- objects ------------------------------------------------------------------
    def object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256

    def put_object(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.object_path(sha256)
        if not path.exists():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha256

    # ---- repos and revisions -------------------------------------------------------
    def get_repo(self, repo_type: str, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            # The Hub answers the same for "missing" and "private, not yours".
            raise HubError(404 if authorized else 401, "Repository not found", "RepoNotFound")
        return repo

    def resolve(self, repo: Repo, revision: str) -> Commit:
        sha = repo.branches.get(revision, revision)
        commit = repo.commits.get(sha)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = Repo(repo_id, repo_type, private, branches={}, commits={}, created=_now())
            self.repos[(repo_type, repo_id)] = repo
            data = DEFAULT_GITATTRIBUTES.encode()
            entry = Entry(self.put_object(data), len(data), lfs=False, _content_oid=git_blob_id(data))
            self.commit(repo, "main", "initial commit", {".gitattributes": entry}, replace=True)
            return repo

    def commit(self, repo: Repo, branch: str, title: str, tree: dict[str, Entry], replace: bool = False) -> Commit:
        parent = repo.branches.get(branch)
        if parent is not None and not replace:
            tree = {**repo.commits[parent].tree, **tree}
        date = _now()
        payload = json.dumps([parent, title, date, time.monotonic_ns(), sorted((p, e.oid) for p, e in tree.items())])
        commit = Commit(hashlib.sha1(payload.encode()).hexdigest(), parent, title, date, tree)
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        return commit

    def lfs_patterns(self, commit: Commit) -> list[str]:
        entry = commit.tree.get(".gitattributes")
        if entry is None:
            return []
        lines = self.object_path(entry.sha256).read_text().splitlines()
        return [line.split()[0] for line in lines if "filter=lfs" in line]

    @staticmethod
    def matches(path: str, patterns: list[str]) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


class HubServer:
    """The loopback Hub on 127.0.0.1 (port 0 = a free one), served from a daemon thread."""

    def __init__(self, root: str | Path, token: str = "hf_loopback_token", host: str = "127.0.0.1", port: int = 0):
        self.state = HubState(root, token)
        self.httpd = ThreadingHTTPServer((host, port), _make_handler(self.state))
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="loopback-hub", daemon=True)

    @property
    def token(self) -> str:
        return self.state.token

    def start(self) -> "HubServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- HTTP --------------------------------------------------------------------------------
def _make_handler(state: HubState):
    class Handler(HubHandler):
        pass

    Handler.state = state
    return Handler


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    state: HubState

    def log_message(self, format, *args):  # quiet: tests read `state.requests` instead
        pass

    # ---- plumbing ------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers: dict | None = None, head: bool = False, length: int | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None, content_type: str = "application/json"):
        self._send(status, json.dumps(obj).encode(), content_type, headers)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.state.token}"

    def _require_auth(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _dispatch(self, method: str) -> None:
        body = b"" if method in ("GET", "HEAD") else self._read_body()
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")] if url.path.strip("/") else []
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.state.lock:
            self.state.requests.append((method, url.path))
        try:
            self._route(method, parts, query, body)
        except HubError as e:
            headers = dict(e.headers)
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            self._send(e.status, json.dumps({"error": e.message}).encode(), headers=headers, head=method == "HEAD")
        except Exception as e:  # a bug here should read as a 500, not a hung client
            self._send(500, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode(), head=method == "HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # ---- routing -------------------------------------------------------------------
    def _route(self, method: str, parts: list[str], query: dict, body: bytes) -> None:
        if parts[:2] == ["api", "whoami-v2"] and method == "GET":
            return self.whoami()
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self.create_repo(json.loads(body))
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self.validate_yaml(json.loads(body))
        if len(parts) >= 4 and parts[0] == "api" and parts[1].rstrip("s") in REPO_TYPES:
            return self.api_repo(method, parts[1].rstrip("s"), f"{parts[2]}/{parts[3]}", parts[4:], query, body)
        if parts[:2] == ["_lfs", "upload"] and method == "PUT":
            return self.lfs_upload(parts[2], body)
        if parts[:2] == ["_lfs", "verify"] and method == "POST":
            return self.lfs_verify(json.loads(body))
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = parts[0].rstrip("s"), parts[1:]
        if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"] and method == "POST":
            return self.lfs_batch(repo_type, f"{parts[0]}/{parts[1][:-4]}", json.loads(body))
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self.resolve_file(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head=method == "HEAD")
        raise HubError(404, f"No route for {method} /{'/'.join(parts)}")

    def api_repo(self, method: str, repo_type: str, repo_id: str, rest: list[str], query: dict, body: bytes) -> None:
        repo = self.state.get_repo(repo_type, repo_id, self._authorized())
        if not rest and method == "GET":
            return self.repo_info(repo, "main", query)
        action, args = rest[0], rest[1:]
        if action == "revision" and method == "GET":
            return self.repo_info(repo, "/".join(args), query)
        if action == "refs" and method == "GET":
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha} for b, sha in repo.branches.items()]
            return self._json({"branches": branches, "tags": [], "converts": []})
        if action == "tree" and method == "GET":
            return self.list_tree(repo, args[0], "/".join(args[1:]), query.get("recursive") in ("true", "True", "1"))
        if action == "paths-info" and method == "POST":
            form = parse_qs(body.decode())
            return self.paths_info(repo, args[0], form.get("paths", []))
        if action == "preupload" and method == "POST":
            self._require_auth()
            return self.preupload(repo, args[0], json.loads(body))
        if action == "commit" and method == "POST":
            self._require_auth()
            return self.commit(repo, args[0], body, query)
        raise HubError(404, f"No route for {method} {action}")

    # ---- account and repos ----------------------------------------------------------
    def whoami(self) -> None:
        self._require_auth()
        orgs = [{"type": "org", "name": o, "fullname": o, "roleInOrg": "admin"} for o in self.state.orgs]
        self._json({
            "type": "user", "id": "0" * 24, "name": self.state.user, "fullname": "Loopback Tester", "orgs": orgs,
            "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}},
        })

    def create_repo(self, payload: dict) -> None:
        self._require_auth()
        namespace = payload.get("organization") or self.state.user
        if namespace != self.state.user and namespace not in self.state.orgs:
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace!r}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload['name']}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"http://{self.headers['Host']}/{prefix}{repo_id}"
        try:
            self.state.create_repo(repo_type, repo_id, private)
        except HubError as e:
            self._json({"error": e.message, "url": url}, status=e.status)
            return
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self, payload: dict) -> None:
        """The Hub checks the card's YAML front matter; here: it parses, and is a mapping."""
        import yaml

        content = payload.get("content", "")
        errors = []
        if content.startswith("---"):
            end = content.find("\n---", 3)
            try:
                meta = yaml.safe_load(content[3:end] if end > 0 else "")
                if meta is not None and not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as e:
                errors.append({"message": f"invalid YAML: {e}"})
        self._json({"errors": errors, "warnings": []}, status=400 if errors else 200)

    def repo_info(self, repo: Repo, revision: str, query: dict) -> None:
        commit = self.state.resolve(repo, revision)
        blobs = query.get("blobs") in ("true", "True", "1")
        siblings = []
        for path, entry in sorted(commit.tree.items()):
            sibling = {"rfilename": path}
            if blobs:
                tree = entry.tree_json(path)
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.lfs:
                    sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": tree["lfs"]["pointerSize"]}
            siblings.append(sibling)
        self._json({
            "_id": repo.repo_id, "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
            "sha": commit.sha, "lastModified": commit.date, "createdAt": repo.created, "private": repo.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
        })

    # ---- listing ---------------------------------------------------------------------
    def _folders(self, commit: Commit) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in commit.tree for i in range(1, p.count("/") + 1)}

    def list_tree(self, repo: Repo, revision: str, prefix: str, recursive: bool) -> None:
        commit = self.state.resolve(repo, revision)
        folders = self._folders(commit)
        if prefix and prefix not in folders:
            raise HubError(404, f"{prefix} does not exist on {revision}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        base = f"{prefix}/" if prefix else ""
        out = []
        for path in sorted(folders):
            rel = path[len(base):]
            if path.startswith(base) and rel and (recursive or "/" not in rel):
                out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path})
        for path, entry in sorted(commit.tree.items()):
            rel = path[len(base):]
            if path.startswith(base) and (recursive or "/" not in rel):
                out.append(entry.tree_json(path))
        self._json(out)

    def paths_info(self, repo: Repo, revision: str, paths: list[str]) -> None:
        commit = self.state.resolve(repo, revision)
        folders = self._folders(commit)
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit.tree:
                out.append(commit.tree[path].tree_json(path))
            elif path in folders:
                out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path})
        self._json(out)

    # ---- uploads ---------------------------------------------------------------------
    def preupload(self, repo: Repo, revision: str, payload: dict) -> None:
        commit = self.state.resolve(repo, revision)
        patterns = self.state.lfs_patterns(commit)
        files = []
        for f in payload["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["size"] >= LFS_THRESHOLD or self.state.matches(f["path"], patterns) or b"\0" in sample
            existing = commit.tree.get(f["path"])
            oid = None
            if existing is not None:  # what the client compares with its local oid to skip unchanged files
                oid = existing.sha256 if existing.lfs else existing.oid
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": files, "commitOid": commit.sha})

    def lfs_batch(self, repo_type: str, repo_id: str, payload: dict) -> None:
        self._require_auth()
        self.state.get_repo(repo_type, repo_id, True)
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        base = f"http://{self.headers['Host']}"
        objects = []
        for obj in payload["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            path = self.state.object_path(obj["oid"])
            if not (path.exists() and path.stat().st_size == obj["size"]):  # already stored: no actions
                item["actions"] = {
                    "upload": {"href": f"{base}/_lfs/upload/{obj['oid']}", "expires_in": 3600},
                    "verify": {"href": f"{base}/_lfs/verify", "header": {}, "expires_in": 3600},
                }
            objects.append(item)
        self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, content_type="application/vnd.git-lfs+json")

    def lfs_upload(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "sha256 of the uploaded content does not match the object id")
        self.state.put_object(body)
        self._send(200)

    def lfs_verify(self, payload: dict) -> None:
        path = self.state.object_path(payload["oid"])
        if not path.exists() or path.stat().st_size != payload["size"]:
            raise HubError(404, "object not found or wrong size")
        self._json({"message": "ok"})

    def commit(self, repo: Repo, revision: str, body: bytes, query: dict) -> None:
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the loopback Hub")
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first line of a commit must be its header")
        header = lines[0]["value"]
        with self.state.lock:
            head = repo.commits[repo.branches[revision]]
            if header.get("parentCommit") and not head.sha.startswith(header["parentCommit"]):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(head.tree)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value["path"].strip("/")
                if key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
                    tree[path] = Entry(self.state.put_object(data), len(data), lfs=False, _content_oid=git_blob_id(data))
                elif key == "lfsFile":
                    stored = self.state.object_path(value["oid"])
                    if not stored.exists():
                        raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                    tree[path] = Entry(value["oid"], stored.stat().st_size, lfs=True)
                elif key == "deletedFile":
                    if path not in tree:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                    del tree[path]
                elif key == "deletedFolder":
                    tree = {p: e for p, e in tree.items() if not p.startswith(path + "/")}
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            commit = self.state.commit(repo, revision, header.get("summary") or "commit", tree, replace=True)
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        url = f"http://{self.headers['Host']}/{prefix}{repo.repo_id}/commit/{commit.sha}"
        self._json({"success": True, "commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": None})

    # ---- downloads -------------------------------------------------------------------
    def resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self.state.get_repo(repo_type, repo_id, self._authorized())
        commit = self.state.resolve(repo, revision)
        entry = commit.tree.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry.oid}"', "Accept-Ranges": "bytes",
                   "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}";'}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        file = self.state.object_path(entry.sha256)
        start, status = 0, 200
        requested = self.headers.get("Range", "")
        if requested.startswith("bytes=") and not head:
            first, _, last = requested[6:].partition("-")
            start = int(first or 0)
            end = int(last) + 1 if last else entry.size
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
            data = file.read_bytes()[start:end]
        else:
            data = b"" if head else file.read_bytes()
        self._send(status, data, "application/octet-stream", headers, head=head, length=entry.size if head else len(data))


if __name__ == "__main__":
    import sys

    server = HubServer(sys.argv[1] if len(sys.argv) > 1 else "loopback-hub").start()
    print(server.url, "token:", server.token, flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()
