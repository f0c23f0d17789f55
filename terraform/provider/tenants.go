package provider

import (
	"context"

	"connectrpc.com/connect"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/mairust/mairust/controlplane/access"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// tenants is the data source mairust_tenants: the caller's tenants.
type tenants struct{ cl *clients }

func newTenants() datasource.DataSource { return &tenants{} }

var _ datasource.DataSourceWithConfigure = (*tenants)(nil)

type tenantModel struct {
	ID   types.String `tfsdk:"id"`
	Name types.String `tfsdk:"name"`
	Role types.String `tfsdk:"role"`
}

type tenantsModel struct {
	Tenants []tenantModel `tfsdk:"tenants"`
}

func (d *tenants) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_tenants"
}

func (d *tenants) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The tenants the token's account is a member of, with its role in each.",
		Attributes: map[string]schema.Attribute{
			"tenants": schema.ListNestedAttribute{Computed: true, NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
				"id":   schema.StringAttribute{Computed: true},
				"name": schema.StringAttribute{Computed: true},
				"role": schema.StringAttribute{Computed: true, Description: "owner, admin or viewer"},
			}}},
		},
	}
}

func (d *tenants) Configure(_ context.Context, req datasource.ConfigureRequest, _ *datasource.ConfigureResponse) {
	if cl, ok := req.ProviderData.(*clients); ok {
		d.cl = cl
	}
}

func (d *tenants) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	r, err := d.cl.tenants.ListTenants(ctx, connect.NewRequest(&tenantsv1.ListTenantsRequest{}))
	if err != nil {
		resp.Diagnostics.AddError("cannot list the tenants", err.Error())
		return
	}
	m := tenantsModel{Tenants: []tenantModel{}}
	for _, t := range r.Msg.Tenants {
		m.Tenants = append(m.Tenants, tenantModel{ID: types.StringValue(t.Id), Name: types.StringValue(t.Name), Role: types.StringValue(access.RoleName(t.Role))})
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}
