package helm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/proctest"
)

const installHelm = "go install helm.sh/helm/v3/cmd/helm@v3.22.0 (or: bash scripts/deps.sh test)"

// chartDir is deploy/helm/mairust, found from this file so that the test
// runs from any working directory.
func chartDir(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the test's own file")
	}
	return filepath.Join(filepath.Dir(file), "mairust")
}

// helmBin finds helm in PATH, GOBIN or GOPATH/bin; it fails (never
// skips) when there is none.
func helmBin(t *testing.T) string {
	t.Helper()
	return proctest.GoTool(t, "helm", installHelm)
}

type valuesCase struct {
	name string
	path string
	// what the values turn on
	values     map[string]any
	hpa        bool
	postgres   bool
	controlDep bool
	agent      bool
}

func valuesFiles(t *testing.T, dir string) []valuesCase {
	t.Helper()
	paths := []string{filepath.Join(dir, "values.yaml")}
	ci, err := filepath.Glob(filepath.Join(dir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ci) < 3 {
		t.Fatalf("want at least 3 values files in %s/ci, found %d", dir, len(ci))
	}
	paths = append(paths, ci...)
	defaults := readYAMLMap(t, filepath.Join(dir, "values.yaml"))
	var cases []valuesCase
	for _, p := range paths {
		v := readYAMLMap(t, p)
		merged := mergeMaps(deepCopy(defaults).(map[string]any), v)
		cases = append(cases, valuesCase{
			name:       strings.TrimPrefix(p, dir+string(filepath.Separator)),
			path:       p,
			values:     v,
			hpa:        boolAt(merged, "controlplane", "autoscaling", "enabled"),
			postgres:   boolAt(merged, "postgresql", "enabled"),
			controlDep: boolAt(merged, "controlplane", "enabled"),
			agent:      boolAt(merged, "agent", "enabled"),
		})
	}
	return cases
}

func TestChart(t *testing.T) {
	helm := helmBin(t)
	dir := chartDir(t)
	cases := valuesFiles(t, dir)
	seen := map[string]bool{}
	for _, vc := range cases {
		seen[fmt.Sprintf("hpa=%v", vc.hpa)] = true
		seen[fmt.Sprintf("postgres=%v", vc.postgres)] = true
		t.Run(vc.name, func(t *testing.T) {
			if out, err := exec.Command(helm, "lint", "--strict", dir, "-f", vc.path).CombinedOutput(); err != nil {
				t.Fatalf("helm lint -f %s: %v\n%s", vc.name, err, out)
			}
			var stderr bytes.Buffer
			cmd := exec.Command(helm, "template", "r", dir, "-f", vc.path)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helm template -f %s: %v\n%s", vc.name, err, stderr.String())
			}
			docs := parseDocs(t, out)
			checkRendered(t, vc, docs)
		})
	}
	// The values files must cover both sides of each switch.
	for _, k := range []string{"hpa=true", "hpa=false", "postgres=true", "postgres=false"} {
		if !seen[k] {
			t.Errorf("no values file renders with %s", k)
		}
	}
}

type obj = map[string]any

func parseDocs(t *testing.T, data []byte) []obj {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []obj
	for {
		var d obj
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML does not parse: %v", err)
		}
		if d == nil {
			continue
		}
		if str(d, "kind") == "" || str(d, "metadata", "name") == "" {
			t.Errorf("rendered object without kind or metadata.name: %v", d)
			continue
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		t.Fatal("helm template rendered nothing")
	}
	return docs
}

func checkRendered(t *testing.T, vc valuesCase, docs []obj) {
	byKind := map[string][]obj{}
	names := map[string]bool{} // kind/name
	for _, d := range docs {
		k := str(d, "kind")
		byKind[k] = append(byKind[k], d)
		key := k + "/" + str(d, "metadata", "name")
		if names[key] {
			t.Errorf("%s rendered twice", key)
		}
		names[key] = true
	}
	existing := existingSecrets(vc.values)

	var workloads []obj
	workloads = append(workloads, byKind["Deployment"]...)
	workloads = append(workloads, byKind["StatefulSet"]...)
	if len(workloads) == 0 {
		t.Fatal("no Deployment or StatefulSet rendered")
	}
	var sawCP, sawAgent, sawPG bool
	for _, w := range workloads {
		wname := str(w, "kind") + "/" + str(w, "metadata", "name")
		component := str(w, "spec", "template", "metadata", "labels", "app.kubernetes.io/component")
		switch component {
		case "controlplane":
			sawCP = true
		case "agent":
			sawAgent = true
		case "postgresql":
			sawPG = true
		default:
			t.Errorf("%s: unknown component %q", wname, component)
		}
		checkWorkload(t, wname, component, w, names, existing)
		if !pdbSelects(byKind["PodDisruptionBudget"], w) {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", wname)
		}
	}
	if sawCP != vc.controlDep || sawAgent != vc.agent {
		t.Errorf("control plane rendered %v (want %v), agent rendered %v (want %v)", sawCP, vc.controlDep, sawAgent, vc.agent)
	}
	if sawPG != vc.postgres {
		t.Errorf("bundled PostgreSQL rendered %v, postgresql.enabled is %v", sawPG, vc.postgres)
	}
	if hpa := len(byKind["HorizontalPodAutoscaler"]) > 0; hpa != vc.hpa {
		t.Errorf("HorizontalPodAutoscaler rendered %v, autoscaling.enabled is %v", hpa, vc.hpa)
	}
	for _, h := range byKind["HorizontalPodAutoscaler"] {
		if str(h, "apiVersion") != "autoscaling/v2" {
			t.Errorf("HPA %s: apiVersion %s, want autoscaling/v2", str(h, "metadata", "name"), str(h, "apiVersion"))
		}
		target := "Deployment/" + str(h, "spec", "scaleTargetRef", "name")
		if !names[target] {
			t.Errorf("HPA %s scales %s, which is not rendered", str(h, "metadata", "name"), target)
		}
	}

	if vc.agent {
		checkMX(t, byKind["Service"])
	}
	checkConfigs(t, byKind["ConfigMap"], workloads)
}

func checkWorkload(t *testing.T, wname, component string, w obj, names map[string]bool, existing map[string]bool) {
	t.Helper()
	spec := m(w, "spec", "template", "spec")
	if spec == nil {
		t.Errorf("%s: no pod template", wname)
		return
	}
	if b, _ := spec["hostNetwork"].(bool); b {
		t.Errorf("%s: hostNetwork", wname)
	}
	if b, _ := spec["hostPID"].(bool); b {
		t.Errorf("%s: hostPID", wname)
	}
	for _, v := range list(spec, "volumes") {
		vol, _ := v.(obj)
		if _, ok := vol["hostPath"]; ok {
			t.Errorf("%s: hostPath volume %v", wname, vol["name"])
		}
		if cm := str(vol, "configMap", "name"); cm != "" && !names["ConfigMap/"+cm] {
			t.Errorf("%s: volume refers to ConfigMap %s, which is not rendered", wname, cm)
		}
		if s := str(vol, "secret", "secretName"); s != "" && !names["Secret/"+s] && !existing[s] {
			t.Errorf("%s: volume refers to Secret %s, neither rendered nor an existingSecret of the values", wname, s)
		}
	}
	psc := m(spec, "securityContext")
	if b, _ := psc["runAsNonRoot"].(bool); !b {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", wname)
	}
	if uid, ok := psc["runAsUser"].(int); !ok || uid == 0 {
		t.Errorf("%s: pod securityContext.runAsUser %v, want a non-zero uid", wname, psc["runAsUser"])
	}
	if _, ok := psc["fsGroup"].(int); !ok {
		t.Errorf("%s: pod securityContext.fsGroup missing", wname)
	}
	containers := append(list(spec, "containers"), list(spec, "initContainers")...)
	if len(list(spec, "containers")) == 0 {
		t.Errorf("%s: no containers", wname)
	}
	for _, c := range containers {
		c, _ := c.(obj)
		cname := wname + " container " + str(c, "name")
		if str(c, "image") == "" {
			t.Errorf("%s: no image", cname)
		}
		if len(m(c, "resources")) == 0 {
			t.Errorf("%s: no resources", cname)
		}
		sc := m(c, "securityContext")
		if b, ok := sc["allowPrivilegeEscalation"].(bool); !ok || b {
			t.Errorf("%s: securityContext.allowPrivilegeEscalation is not false", cname)
		}
		if b, ok := sc["runAsNonRoot"].(bool); ok && !b {
			t.Errorf("%s: securityContext.runAsNonRoot false", cname)
		}
		if uid, ok := sc["runAsUser"].(int); ok && uid == 0 {
			t.Errorf("%s: securityContext.runAsUser 0", cname)
		}
		if b, ok := sc["privileged"].(bool); ok && b {
			t.Errorf("%s: privileged", cname)
		}
		drop := fmt.Sprint(list(sc, "capabilities", "drop"))
		if !strings.Contains(drop, "ALL") {
			t.Errorf("%s: capabilities.drop %s does not hold ALL", cname, drop)
		}
		// Declared ports, by name and number.
		ports := map[string]bool{}
		for _, p := range list(c, "ports") {
			p, _ := p.(obj)
			ports[str(p, "name")] = true
			ports[fmt.Sprint(p["containerPort"])] = true
		}
		for _, probe := range []string{"readinessProbe", "livenessProbe"} {
			pr := m(c, probe)
			if pr == nil {
				t.Errorf("%s: no %s", cname, probe)
				continue
			}
			if component == "postgresql" {
				// PostgreSQL has no HTTP endpoint: pg_isready.
				if len(list(pr, "exec", "command")) == 0 && m(pr, "tcpSocket") == nil {
					t.Errorf("%s: %s is neither exec nor tcpSocket", cname, probe)
				}
				continue
			}
			if p := str(pr, "httpGet", "path"); p != "/health" {
				t.Errorf("%s: %s httpGet path %q, want /health", cname, probe, p)
			}
			if port := fmt.Sprint(m(pr, "httpGet")["port"]); !ports[port] {
				t.Errorf("%s: %s port %s is not a port the container declares", cname, probe, port)
			}
		}
		// Every reference to a Secret or ConfigMap must resolve.
		for _, e := range list(c, "env") {
			e, _ := e.(obj)
			if s := str(e, "valueFrom", "secretKeyRef", "name"); s != "" && !names["Secret/"+s] && !existing[s] {
				t.Errorf("%s: env %s refers to Secret %s, neither rendered nor an existingSecret of the values", cname, str(e, "name"), s)
			}
			if cm := str(e, "valueFrom", "configMapKeyRef", "name"); cm != "" && !names["ConfigMap/"+cm] {
				t.Errorf("%s: env %s refers to ConfigMap %s, which is not rendered", cname, str(e, "name"), cm)
			}
		}
		for _, e := range list(c, "envFrom") {
			e, _ := e.(obj)
			if s := str(e, "secretRef", "name"); s != "" && !names["Secret/"+s] && !existing[s] {
				t.Errorf("%s: envFrom refers to Secret %s, neither rendered nor an existingSecret of the values", cname, s)
			}
			if cm := str(e, "configMapRef", "name"); cm != "" && !names["ConfigMap/"+cm] {
				t.Errorf("%s: envFrom refers to ConfigMap %s, which is not rendered", cname, cm)
			}
		}
	}
}

func pdbSelects(pdbs []obj, w obj) bool {
	labels := m(w, "spec", "template", "metadata", "labels")
	for _, p := range pdbs {
		sel := m(p, "spec", "selector", "matchLabels")
		if len(sel) == 0 {
			continue
		}
		match := true
		for k, v := range sel {
			if fmt.Sprint(labels[k]) != fmt.Sprint(v) {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

func checkMX(t *testing.T, services []obj) {
	t.Helper()
	for _, s := range services {
		if !strings.HasSuffix(str(s, "metadata", "name"), "-agent-mx") {
			continue
		}
		if typ := str(s, "spec", "type"); typ != "LoadBalancer" {
			t.Errorf("MX service %s is %s, want LoadBalancer", str(s, "metadata", "name"), typ)
		}
		for _, p := range list(s, "spec", "ports") {
			p, _ := p.(obj)
			if fmt.Sprint(p["port"]) == "25" {
				return
			}
		}
		t.Errorf("MX service %s does not expose port 25", str(s, "metadata", "name"))
		return
	}
	t.Error("no MX service (…-agent-mx) rendered")
}

// checkConfigs parses the mairust.yaml of each ConfigMap a MaiRust
// workload mounts with the project's own config parser.
func checkConfigs(t *testing.T, cms []obj, workloads []obj) {
	t.Helper()
	mounted := map[string]string{}
	for _, w := range workloads {
		comp := str(w, "spec", "template", "metadata", "labels", "app.kubernetes.io/component")
		if comp != "agent" && comp != "controlplane" {
			continue
		}
		for _, v := range list(w, "spec", "template", "spec", "volumes") {
			v, _ := v.(obj)
			if cm := str(v, "configMap", "name"); cm != "" {
				mounted[cm] = comp
			}
		}
	}
	if len(mounted) == 0 {
		t.Error("no MaiRust workload mounts a ConfigMap")
	}
	for _, cm := range cms {
		name := str(cm, "metadata", "name")
		comp, ok := mounted[name]
		if !ok {
			continue
		}
		delete(mounted, name)
		data := str(cm, "data", "mairust.yaml")
		if data == "" {
			t.Errorf("ConfigMap %s has no mairust.yaml", name)
			continue
		}
		cfg, err := config.Parse([]byte(data), "ConfigMap "+name)
		if err != nil {
			t.Errorf("ConfigMap %s: mairust.yaml does not parse: %v\n%s", name, err, data)
			continue
		}
		switch comp {
		case "agent":
			if !strings.HasPrefix(cfg.SMTP.Listen, "0.0.0.0:") || !strings.HasPrefix(cfg.HTTP.Listen, "0.0.0.0:") {
				t.Errorf("ConfigMap %s: agent listens on smtp %q, http %q; want 0.0.0.0", name, cfg.SMTP.Listen, cfg.HTTP.Listen)
			}
		case "controlplane":
			if cfg.ControlPlane.Listen != "0.0.0.0:8090" {
				t.Errorf("ConfigMap %s: controlplane.listen %q, want 0.0.0.0:8090", name, cfg.ControlPlane.Listen)
			}
		}
	}
	for name := range mounted {
		t.Errorf("ConfigMap %s is mounted but not rendered", name)
	}
}

// existingSecrets collects every non-empty value of a key named
// existingSecret anywhere in the values file.
func existingSecrets(v any) map[string]bool {
	out := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "existingSecret" && s != "" {
					out[s] = true
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}

func readYAMLMap(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]any{}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, x := range v {
			c[k] = deepCopy(x)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = deepCopy(x)
		}
		return c
	}
	return v
}

// mergeMaps merges src over dst as Helm merges values files.
func mergeMaps(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeMaps(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func m(v any, path ...string) obj {
	for _, p := range path {
		mm, ok := v.(obj)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	r, _ := v.(obj)
	return r
}

func list(v any, path ...string) []any {
	for _, p := range path {
		mm, ok := v.(obj)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	r, _ := v.([]any)
	return r
}

func str(v any, path ...string) string {
	for _, p := range path {
		mm, ok := v.(obj)
		if !ok {
			return ""
		}
		v = mm[p]
	}
	s, _ := v.(string)
	return s
}

func boolAt(v any, path ...string) bool {
	for _, p := range path {
		mm, ok := v.(obj)
		if !ok {
			return false
		}
		v = mm[p]
	}
	b, _ := v.(bool)
	return b
}
