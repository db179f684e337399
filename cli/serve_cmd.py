"""`deploy serve`: run the serving gateway from a rendered config."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Gateway config written by `deploy render`.")
@click.option("--host", default=None, help="Listen address (default: the config's listen.host, 127.0.0.1; the container image passes 0.0.0.0).")
@click.option("--port", default=None, type=int, help="Listen port (default: the config's listen.port, 8080).")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]), show_default=True)
def serve(config_path: str, host: str | None, port: int | None, log_level: str) -> None:
    """Run the gateway: OpenAI- and Anthropic-compatible endpoints, fallback, budgets, metrics.

    \b
    SIGTERM drains in-flight requests (up to drain_timeout_s) and exits;
    SIGHUP reloads the config and replica files without dropping connections.
    """
    import asyncio
    import logging
    import sys

    from agentdeploy.serving.config import check_secrets, load_config, memory_budget_warning

    config = load_config(config_path)
    check_secrets(config)
    warning = memory_budget_warning(config)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from agentdeploy.serving.app import run

    asyncio.run(run(config, config_path, host or config.listen.host, port or config.listen.port))
