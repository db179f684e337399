"""Which model weights need a Hugging Face token (gated repositories), and the check (pure).

A gated repository answers 401/403 to anonymous downloads: a fleet deployed without the
token boots, fails to load weights and is replaced in a loop. So the program refuses such a
stack (and `deploy preview` with it) naming the model, and only those fleets get the token.

The catalog's `gated` flag on an open model decides when present; otherwise the repository's
owner: every `meta-llama/*` repository is gated behind the Llama community license
(huggingface.co/meta-llama model pages: "You need to agree to share your contact
information to access this model", as of 2026-12). Qwen2.5 repositories are Apache-2.0 and
not gated.
"""

from __future__ import annotations

from agentdeploy.errors import InvalidInput
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import AgentPlan

GATED_OWNERS = frozenset({"meta-llama"})


def is_gated(catalog: Catalog, open_model: str, hf_repo: str) -> bool:
    model = catalog.open_models.get(open_model)
    flag = getattr(model, "gated", None) if model is not None else None
    if isinstance(flag, bool):
        return flag
    return hf_repo.split("/", 1)[0] in GATED_OWNERS


def gated_agents(catalog: Catalog, agents: list[AgentPlan]) -> list[AgentPlan]:
    return [a for a in agents if a.fleet is not None and is_gated(catalog, a.fleet.open_model, a.fleet.hf_repo)]


def require_token(catalog: Catalog, agents: list[AgentPlan], has_token: bool, stack: str) -> None:
    gated = gated_agents(catalog, agents)
    if gated and not has_token:
        raise InvalidInput(
            f"stack {stack}: gated model weights need a Hugging Face token: "
            + ", ".join(f"{a.name} serves {a.fleet.hf_repo}" for a in gated if a.fleet),
            hint="accept the model's license on its Hugging Face page, create a read token, then "
                 f"`pulumi config set --secret agentdeploy:huggingFaceToken hf_... --stack {stack}`")
