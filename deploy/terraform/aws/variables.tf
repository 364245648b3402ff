variable "region" {
  description = "AWS region to run the VM in."
  type        = string
  default     = "eu-central-1"
}

variable "instance_type" {
  description = "EC2 instance type. c7i.xlarge has AMX (compiled bf16 is the fast path); g5.xlarge has a GPU (use the CUDA image)."
  type        = string
  default     = "c7i.xlarge"
}

variable "key_name" {
  description = "Name of an existing EC2 key pair for SSH."
  type        = string
}

variable "ssh_cidrs" {
  description = "CIDR blocks allowed to SSH to the VM (port 22). Keep it to your own address."
  type        = list(string)
}

variable "api_cidrs" {
  description = "CIDR blocks allowed to reach the API port. No default: choose who may call the API (0.0.0.0/0 only with BATCHSERVE_API_KEYS set, see docs/deployment.md)."
  type        = list(string)

  validation {
    condition     = length(var.api_cidrs) > 0 && alltrue([for cidr in var.api_cidrs : can(cidrhost(cidr, 0))])
    error_message = "api_cidrs must list at least one CIDR block, such as 203.0.113.0/24."
  }
}

variable "api_port" {
  description = "Port of the batchserve API on the VM."
  type        = number
  default     = 8000
}

variable "repository_url" {
  description = "Git repository with docker-compose.yml to clone on the VM (your fork or mirror of batchserve). No default: there is no canonical public copy to assume."
  type        = string

  validation {
    condition     = can(regex("^(https://|git@|ssh://)", var.repository_url))
    error_message = "repository_url must be a git URL the VM can clone, such as https://github.com/you/batchserve.git."
  }
}

variable "repository_ref" {
  description = "Branch or tag of the repository to deploy."
  type        = string
  default     = "main"
}

variable "root_volume_gb" {
  description = "Size of the root disk in GB (images, weights, Prometheus data)."
  type        = number
  default     = 40
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = { Project = "batchserve" }
}
