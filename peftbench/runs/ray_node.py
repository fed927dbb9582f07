"""What a Ray task's run leaves on its node: where its files go, and which node it ran on.

Shared by the one-process task (`ray_executor`) and the multi-process one (`ray_train`), which the executor
ships to the cluster: a module of its own, so that neither imports the other for it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

RETURN_LIMIT_BYTES = 256 * 2**20
NODE_ARTIFACTS = "ray-artifacts"  # under the node's peftbench cache: where a task's run writes its files


def node_identity() -> dict[str, str]:
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}


def collect_artifacts(fields: dict[str, Any], node_dir: Path, shared_dir: Path | None,
                      limit: int = RETURN_LIMIT_BYTES) -> dict[str, bytes] | None:
    """Where the run's files go, said in the run's `artifacts` field (where, path, bytes): copied into the shared
    `artifacts_dir` when one is named; else returned (the driver writes them) when at most `limit` bytes;
    else left on the node. Returns the files to send back, or None."""
    files = sorted(p for p in node_dir.rglob("*") if p.is_file()) if node_dir.is_dir() else []
    size = sum(p.stat().st_size for p in files)
    if shared_dir is not None:
        dest = shared_dir / node_dir.name
        shutil.rmtree(dest, ignore_errors=True)
        node_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(node_dir, dest)
        shutil.rmtree(node_dir, ignore_errors=True)
        fields["artifacts"] = {"where": "artifacts_dir", "path": str(dest), "bytes": size}
        if fields.get("adapter_path"):
            fields["adapter_path"] = str(dest)
        return None
    if size <= limit:
        returned = {str(p.relative_to(node_dir)): p.read_bytes() for p in files}
        shutil.rmtree(node_dir, ignore_errors=True)
        fields["artifacts"] = {"where": "results", "path": None, "bytes": size}  # the driver fills in the path
        return returned
    fields["artifacts"] = {"where": "node", "path": str(node_dir), "bytes": size,
                           "node_ip": fields.get("ray", {}).get("node_ip"),
                           "note": f"over the {limit // 2**20} MiB returned to the driver: name a shared "
                                   "artifacts_dir= to collect them"}
    return None
