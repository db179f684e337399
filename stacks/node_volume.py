"""A GPU node's root volume, sized from the model it serves (pure).

Weights are params x bytes per parameter (the catalog's assumption, bf16: 2). The volume
holds the OS and CUDA stack (the DLAMI's own ~75 GB), the virtualenv with vLLM and torch
(~15 GB), and the weights twice over (Hugging Face's download cache writes beside the blob
it completes); gp3 throughput is raised so the weights load in about two minutes. Where
the instance has NVMe instance storage, the DLAMI mounts it at /opt/dlami/nvme and the node
caches weights there instead (templates/gpu_node.py), and the root volume still fits them.

Sources (as of 2026-12): EBS gp3: 125-1000 MiB/s throughput, at most 0.25 MiB/s per
provisioned IOPS, 3000 IOPS baseline; DLAMI release notes: root volume ~75 GB used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import FleetPlan

OS_AND_ENGINE_GB = 90
GP3_MIN_MIBPS, GP3_MAX_MIBPS = 125, 1000
GP3_BASE_IOPS = 3000
#: Seconds to read the weights from the volume at the provisioned throughput.
LOAD_TARGET_S = 120


@dataclass(frozen=True)
class NodeVolume:
    size_gb: int
    throughput_mibps: int
    iops: int
    weight_gb: float


def weight_gb(catalog: Catalog, fleet: FleetPlan) -> float:
    model = catalog.open_models[fleet.open_model]
    return model.params_b * catalog.assumptions.weight_bytes_per_param


def node_volume(catalog: Catalog, fleet: FleetPlan | None, override_gb: int | None = None) -> NodeVolume:
    assert fleet is not None, "a GPU agent has a fleet"
    weights = weight_gb(catalog, fleet)
    size = override_gb or int(math.ceil((OS_AND_ENGINE_GB + 2 * weights) / 10) * 10)
    mibps = min(GP3_MAX_MIBPS, max(GP3_MIN_MIBPS, math.ceil(weights * 1e9 / 2**20 / LOAD_TARGET_S)))
    iops = max(GP3_BASE_IOPS, math.ceil(mibps / 0.25))
    return NodeVolume(size, mibps, iops, weights)
