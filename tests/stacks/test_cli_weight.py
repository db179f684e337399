"""`deploy --help` and the provisioning command module stay light: pulumi and boto3 load only
inside the commands."""

import subprocess
import sys


def test_stack_cmd_imports_no_heavy_modules():
    code = ("import sys, agentdeploy.cli.stack_cmd; "
            "heavy = [m for m in ('pulumi', 'pulumi_aws', 'boto3', 'grpc') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_help_lists_the_provisioning_commands():
    result = subprocess.run([sys.executable, "-c", "from agentdeploy.cli.main import main; main()", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in ("preview", "up", "down", "refresh", "outputs"):
        assert f"  {name} " in result.stdout
