"""Upload a checkpoint folder to the Hugging Face Hub, with its model card regenerated.

    python -m training publish MODEL_DIR REPO_ID [--private] [--revision BRANCH]
                               [--commit-message M] [--token T] [--dry-run] [--json]
                               [--space SPACE_REPO]

Before anything is sent, the folder is checked like a user would load it: config.json parses,
an ONNX export is there exactly when config.json records one (with the recorded SHA-256), a
token is at hand, and model.safetensors loads strictly into the model config.json describes.
An incomplete folder is refused with the list of what is wrong. README.md is then regenerated
from MODEL_CARD.md and config.json (metrics, assignment summary, recipe), written into the
folder, and the files go up in one commit: config.json, model.safetensors, the ONNX export when
there is one, README.md. The token comes from --token, HF_TOKEN or the stored login
(`hf auth login`). With --space, a Hugging Face Space serving the explanation explorer
against the published model (app.py, requirements.txt, README.md) is committed too.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from qpm_zoo.formatting import format_table, print_json

from ..publishing import (
    DEFAULT_REVISION,
    PublishPlan,
    PublishResult,
    plan_publish,
    publish,
    verify_weights,
)
from ..space import SpaceFiles, check_space_repo, space_files, upload_space


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        type=Path,
        help="checkpoint folder (config.json, model.safetensors)",
    )
    p.add_argument(
        "repo_id", metavar="REPO_ID", help="Hub model repository, e.g. my-org/qpm-resnet50-cub"
    )
    p.add_argument(
        "--private",
        action="store_true",
        help="create the repository as private (an existing one keeps its visibility)",
    )
    p.add_argument(
        "--revision",
        default=DEFAULT_REVISION,
        metavar="BRANCH",
        help="branch to commit to, created if needed (default main)",
    )
    p.add_argument(
        "--commit-message",
        metavar="M",
        help="commit message (default: names the model and qpm-zoo version)",
    )
    p.add_argument(
        "--token", help="Hub token with write access (default: HF_TOKEN or the stored login)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the folder and list what would be uploaded; contact no server",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--space",
        metavar="SPACE_REPO",
        help="also publish a Space serving the explanation explorer for the model "
        "(Gradio; created if needed, e.g. my-org/qpm-resnet50-cub-explorer)",
    )


def run(args: argparse.Namespace) -> int:
    plan = plan_publish(args.model_dir, args.repo_id, args.revision)
    space = None
    if args.space is not None:
        check_space_repo(args.space)
        space = space_files(plan.config, plan.repo_id, plan.revision)
    if args.dry_run:
        verify_weights(plan.folder)
        result = space_result = None
    else:
        result = publish(
            plan, token=args.token, private=args.private, commit_message=args.commit_message
        )
        space_result = (
            None
            if space is None
            else upload_space(space, args.space, token=args.token, private=args.private)
        )
    _report(plan, result, args.json, space and (args.space, space, space_result))
    return 0


def _report(
    plan: PublishPlan,
    result: PublishResult | None,
    as_json: bool,
    space: tuple[str, SpaceFiles, PublishResult | None] | None = None,
) -> None:
    files = [
        {"name": f.name, "size": f.size, "path": os.fspath(f.path), "regenerated": f.regenerated}
        for f in plan.files
    ]
    if as_json:
        out = {
            "repo_id": plan.repo_id,
            "revision": plan.revision,
            "dry_run": result is None,
            "files": files,
        }
        if result is not None:
            out.update(
                commit_url=result.commit_url, commit_oid=result.commit_oid, repo_url=result.repo_url
            )
        if space is not None:
            space_repo, files, sent = space
            out["space"] = {"repo_id": space_repo, "onnx": files.onnx, "files": list(files.files)}
            if sent is not None:
                out["space"].update(commit_url=sent.commit_url, commit_oid=sent.commit_oid)
        print_json(out)
        return
    rows = [
        (f.name, f.size, "regenerated from MODEL_CARD.md" if f.regenerated else "")
        for f in plan.files
    ]
    print(format_table(["file", "bytes", ""], rows))
    if result is None:
        where = f"{plan.repo_id} (branch {plan.revision})"
        print(f"dry run: would commit these {len(rows)} files to {where}")
    else:
        print(f"committed to {plan.repo_id} (branch {plan.revision}): {result.commit_url}")
    if space is not None:
        space_repo, files, sent = space
        names = ", ".join(files.files)
        if sent is None:
            print(f"dry run: would commit the Space {space_repo} ({names})")
        else:
            print(f"Space {space_repo} ({names}): {sent.commit_url}")
