"""deploy/terraform/aws: formatted, and only the API port and SSH are open."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool

#: A real model or a server process: make test-fast skips these.
pytestmark = pytest.mark.slow

AWS = Path(__file__).parents[2] / "deploy" / "terraform" / "aws"


def test_terraform_fmt_is_clean() -> None:
    result = subprocess.run(
        [require_tool("terraform"), "fmt", "-check", "-recursive", "-diff", str(AWS)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_only_the_api_port_and_ssh_are_open() -> None:
    main = (AWS / "main.tf").read_text()
    ingress = re.findall(r'resource "aws_vpc_security_group_ingress_rule" "(\w+)"', main)
    assert ingress == ["allowed"]
    rules = main.split("ingress = merge(")[1].split("\n  )\n")[0]
    ports = re.findall(r"port = ([\w.]+)", rules)
    assert ports == ["var.api_port", "22"]
    assert "var.api_cidrs" in rules
    assert "var.ssh_cidrs" in rules


def test_the_vm_runs_the_compose_stack_and_the_url_is_an_output() -> None:
    cloud_init = (AWS / "cloud-init.yaml.tftpl").read_text()
    assert cloud_init.startswith("#cloud-config")
    assert "docker compose up -d --build" in cloud_init
    outputs = (AWS / "outputs.tf").read_text()
    assert 'output "api_url"' in outputs
    variables = (AWS / "variables.tf").read_text()
    for name in ("region", "instance_type", "key_name", "ssh_cidrs", "api_cidrs"):
        assert f'variable "{name}"' in variables, name


@pytest.mark.parametrize("name", ["api_cidrs", "repository_url"])
def test_who_may_call_the_api_and_what_to_clone_have_no_default(name: str) -> None:
    variables = (AWS / "variables.tf").read_text()
    block = variables.split(f'variable "{name}" {{')[1].split("\n}\n")[0]
    assert not re.search(r"^\s*default\s*=", block, re.MULTILINE)
    assert "validation" in block
