# A tenant's domain managed with Terraform. The control plane's URL and an
# API token come from the environment:
#   export MAIRUST_CONTROLPLANE_URL=https://cp.example.com
#   export MAIRUST_API_TOKEN=mrt_...   # made with CreateAPIToken
#   terraform apply -var tenant=<tenant id>
terraform {
  required_providers {
    mairust = { source = "mairust.invalid/mairust/mairust" }
  }
}

provider "mairust" {}

variable "tenant" {
  type        = string
  description = "The tenant's id (see the tenants output, or the console)."
}

data "mairust_tenants" "mine" {}

resource "mairust_domain" "main" {
  tenant_id = var.tenant
  name      = "mail.example.com"
}

output "tenants" {
  value = data.mairust_tenants.mine.tenants
}
