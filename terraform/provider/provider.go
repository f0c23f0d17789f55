// Package provider is the Terraform provider of the MaiRust control
// plane: it manages a tenant's domains through the control plane's API,
// authenticated with an API token, and reads the caller's tenants.
package provider

import (
	"context"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/mairust/mairust/proto/mairust/tenants/v1/tenantsv1connect"
)

// Address is the provider's source address in Terraform configurations
// (required_providers), served through a CLI dev_overrides or a local
// mirror: it names no public registry.
const Address = "mairust.invalid/mairust/mairust"

// New returns the provider.
func New() provider.Provider { return &mairust{} }

type mairust struct{}

// config is the provider block.
type config struct {
	URL   types.String `tfsdk:"url"`
	Token types.String `tfsdk:"token"`
}

// clients are the control plane's services, as the token.
type clients struct {
	tenants tenantsv1connect.TenantsServiceClient
}

func (p *mairust) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "mairust"
}

func (p *mairust) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Manages MaiRust tenants' objects through the control plane's API.",
		Attributes: map[string]schema.Attribute{
			"url":   schema.StringAttribute{Optional: true, Description: "The control plane's URL, e.g. https://cp.example.com (or MAIRUST_CONTROLPLANE_URL)."},
			"token": schema.StringAttribute{Optional: true, Sensitive: true, Description: "An API token (mrt_...) made with CreateAPIToken (or MAIRUST_API_TOKEN)."},
		},
	}
}

func (p *mairust) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var c config
	resp.Diagnostics.Append(req.Config.Get(ctx, &c)...)
	if resp.Diagnostics.HasError() {
		return
	}
	url, token := c.URL.ValueString(), c.Token.ValueString()
	if url == "" {
		url = os.Getenv("MAIRUST_CONTROLPLANE_URL")
	}
	if token == "" {
		token = os.Getenv("MAIRUST_API_TOKEN")
	}
	if url == "" || !strings.HasPrefix(token, "mrt_") {
		resp.Diagnostics.AddError("mairust provider not configured",
			"Set url (or MAIRUST_CONTROLPLANE_URL) to the control plane's URL and token (or MAIRUST_API_TOKEN) to an API token (mrt_...) made with CreateAPIToken.")
		return
	}
	auth := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
			r.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, r)
		}
	}))
	cl := &clients{tenants: tenantsv1connect.NewTenantsServiceClient(http.DefaultClient, strings.TrimSuffix(url, "/"), auth)}
	resp.ResourceData, resp.DataSourceData = cl, cl
}

func (p *mairust) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{newDomain}
}

func (p *mairust) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{newTenants}
}
