package provider

import (
	"context"
	"strings"

	"connectrpc.com/connect"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// domain is mairust_domain: a mail domain of a tenant.
type domain struct{ cl *clients }

func newDomain() resource.Resource { return &domain{} }

type domainModel struct {
	ID       types.String `tfsdk:"id"`
	TenantID types.String `tfsdk:"tenant_id"`
	Name     types.String `tfsdk:"name"`
}

var (
	_ resource.ResourceWithConfigure   = (*domain)(nil)
	_ resource.ResourceWithImportState = (*domain)(nil)
)

func (d *domain) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_domain"
}

func (d *domain) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		Description: "A mail domain of a tenant; its agents receive mail for it. Import as tenant_id/domain_id.",
		Attributes: map[string]schema.Attribute{
			"id":        schema.StringAttribute{Computed: true, PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"tenant_id": schema.StringAttribute{Required: true, PlanModifiers: replace, Description: "The tenant's id."},
			"name":      schema.StringAttribute{Required: true, PlanModifiers: replace, Description: "The domain name, e.g. example.com."},
		},
	}
}

func (d *domain) Configure(_ context.Context, req resource.ConfigureRequest, _ *resource.ConfigureResponse) {
	if cl, ok := req.ProviderData.(*clients); ok {
		d.cl = cl
	}
}

func (d *domain) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m domainModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r, err := d.cl.tenants.AddDomain(ctx, connect.NewRequest(&tenantsv1.AddDomainRequest{TenantId: m.TenantID.ValueString(), Name: m.Name.ValueString()}))
	if err != nil {
		resp.Diagnostics.AddError("cannot add the domain", err.Error())
		return
	}
	m.ID, m.Name = types.StringValue(r.Msg.Domain.Id), types.StringValue(r.Msg.Domain.Name)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

// find returns the tenant's domain of id, or nil when it is gone.
func (d *domain) find(ctx context.Context, tenant, id string) (*tenantsv1.Domain, error) {
	r, err := d.cl.tenants.ListDomains(ctx, connect.NewRequest(&tenantsv1.ListDomainsRequest{TenantId: tenant}))
	if err != nil {
		return nil, err
	}
	for _, dom := range r.Msg.Domains {
		if dom.Id == id {
			return dom, nil
		}
	}
	return nil, nil
}

func (d *domain) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m domainModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	dom, err := d.find(ctx, m.TenantID.ValueString(), m.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("cannot read the domain", err.Error())
		return
	}
	if dom == nil { // deleted elsewhere (the console): planned again
		resp.State.RemoveResource(ctx)
		return
	}
	m.Name = types.StringValue(dom.Name)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

func (d *domain) Update(_ context.Context, _ resource.UpdateRequest, resp *resource.UpdateResponse) {
	resp.Diagnostics.AddError("domains are not updated in place", "changing tenant_id or name replaces the domain")
}

func (d *domain) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m domainModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	_, err := d.cl.tenants.DeleteDomain(ctx, connect.NewRequest(&tenantsv1.DeleteDomainRequest{TenantId: m.TenantID.ValueString(), DomainId: m.ID.ValueString()}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		resp.Diagnostics.AddError("cannot delete the domain", err.Error())
	}
}

func (d *domain) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	tenant, id, ok := strings.Cut(req.ID, "/")
	if !ok || tenant == "" || id == "" {
		resp.Diagnostics.AddError("import id", "import a domain as tenant_id/domain_id")
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("tenant_id"), tenant)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), id)...)
}
