output "public_ip" {
  description = "Public IP address of the VM."
  value       = aws_instance.batchserve.public_ip
}

output "api_url" {
  description = "The batchserve API (it answers /ready once the image is built and warm)."
  value       = "http://${aws_instance.batchserve.public_dns}:${var.api_port}"
}

output "ssh_tunnel" {
  description = "Reach Grafana (3000) and Prometheus (9090) through SSH."
  value       = "ssh -L 3000:localhost:3000 -L 9090:localhost:9090 admin@${aws_instance.batchserve.public_dns}"
}
