// Command terraform-provider-mairust is the Terraform provider of the
// MaiRust control plane (see terraform/README.md).
package main

import (
	"context"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/mairust/mairust/terraform/provider"
)

func main() {
	if err := providerserver.Serve(context.Background(), provider.New, providerserver.ServeOpts{Address: provider.Address}); err != nil {
		log.Fatal(err)
	}
}
