"""`deploy keygen`: client keys the gateway accepts (256 random bits each, URL-safe).

Render and the stack refuse keys shorter than 32 characters; this prints good ones, in the
shape `agentdeploy:gatewayClientKeys` takes, so they can be piped straight into
`pulumi config set --secret`.
"""

from __future__ import annotations

import json

import click


@click.command("keygen")
@click.option("--agent", "agents", multiple=True,
              help="Make a key for this agent (repeatable); without it one key for every agent (\"*\").")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 100), help="Keys per agent.")
@click.option("--json", "as_json", is_flag=True, help="Print the gatewayClientKeys JSON object.")
def keygen(agents: tuple[str, ...], count: int, as_json: bool) -> None:
    """Print new client keys for the gateway."""
    from agentdeploy.naming import SHARED_KEY
    from agentdeploy.templates.gateway_config import generate_client_key

    names = list(agents) or [SHARED_KEY]
    keys = {name: [generate_client_key() for _ in range(count)] for name in names}
    if as_json:
        click.echo(json.dumps(keys, sort_keys=True))
        return
    for name, values in keys.items():
        for value in values:
            click.echo(f"{name}\t{value}")
