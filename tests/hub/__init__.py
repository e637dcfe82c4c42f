"""Test infrastructure for the Hugging Face Hub path: servers on 127.0.0.1 and their clients.

- `upload_server`: a small Hub written here that accepts the real client's uploads
  (repo create, preupload, Git LFS batch + PUT, NDJSON commit) and serves them back.
- `git_mirror` and `olah`: an independent, installed Hub mirror (olah, offline mode) serving
  git repositories built from checkpoint folders, for the download path.
- `client`: runs huggingface_hub / qpm_zoo code in a subprocess whose environment points the
  client at one of those servers (the client reads HF_ENDPOINT and friends at import).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
