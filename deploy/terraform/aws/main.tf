# One VM running the docker-compose stack (batchserve, Prometheus, Grafana).
# Only the API port (from api_cidrs) and SSH (from ssh_cidrs) are open; reach Grafana and
# Prometheus through an SSH tunnel: ssh -L 3000:localhost:3000 -L 9090:localhost:9090 ...

data "aws_ami" "debian" {
  most_recent = true
  owners      = ["136693071363"] # Debian

  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

resource "aws_security_group" "batchserve" {
  name_prefix = "batchserve-"
  description = "batchserve API and SSH only"
  tags        = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # The only ways in: the API port from api_cidrs, SSH from ssh_cidrs.
  ingress = merge(
    { for cidr in var.api_cidrs : "api ${cidr}" => { port = var.api_port, cidr = cidr, what = "batchserve API" } },
    { for cidr in var.ssh_cidrs : "ssh ${cidr}" => { port = 22, cidr = cidr, what = "SSH" } },
  )
}

resource "aws_vpc_security_group_ingress_rule" "allowed" {
  for_each          = local.ingress
  security_group_id = aws_security_group.batchserve.id
  description       = each.value.what
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.batchserve.id
  description       = "image pulls, weights download, OS updates"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}

resource "aws_instance" "batchserve" {
  ami                    = data.aws_ami.debian.id
  instance_type          = var.instance_type
  key_name               = var.key_name
  vpc_security_group_ids = [aws_security_group.batchserve.id]

  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    repository_url = var.repository_url
    repository_ref = var.repository_ref
    api_port       = var.api_port
  })
  user_data_replace_on_change = true

  root_block_device {
    volume_size = var.root_volume_gb
    volume_type = "gp3"
    encrypted   = true
  }

  metadata_options {
    http_tokens = "required"
  }

  tags = merge(var.tags, { Name = "batchserve" })
}
