package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-ai/sluice/shared/config"
)

// samTemplate is the part of deploy/lambda/template.yaml the adapter depends
// on; CloudFormation's !Ref/!GetAtt tags are left as nodes.
type samTemplate struct {
	Globals struct {
		Function struct {
			Handler     string `yaml:"Handler"`
			Runtime     string `yaml:"Runtime"`
			Environment struct {
				Variables map[string]yaml.Node `yaml:"Variables"`
			} `yaml:"Environment"`
		} `yaml:"Function"`
	} `yaml:"Globals"`
	Resources map[string]struct {
		Type       string `yaml:"Type"`
		Properties struct {
			Timeout     int `yaml:"Timeout"`
			Environment struct {
				Variables map[string]string `yaml:"Variables"`
			} `yaml:"Environment"`
			FunctionURLConfig *struct {
				AuthType   string `yaml:"AuthType"`
				InvokeMode string `yaml:"InvokeMode"`
			} `yaml:"FunctionUrlConfig"`
			Events map[string]struct {
				Type       string         `yaml:"Type"`
				Properties map[string]any `yaml:"Properties"`
			} `yaml:"Events"`
		} `yaml:"Properties"`
	} `yaml:"Resources"`
}

// TestSAMTemplate checks that the template deploys every function the
// adapter serves, in modes the adapter accepts, with streaming where a
// Function URL is used and the rollup on the stack file's schedule.
func TestSAMTemplate(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "lambda", "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tpl samTemplate
	if err := yaml.Unmarshal(raw, &tpl); err != nil {
		t.Fatal(err)
	}
	g := tpl.Globals.Function
	if g.Handler != "bootstrap" || !strings.HasPrefix(g.Runtime, "provided.al") {
		t.Errorf("globals: handler %q runtime %q, want bootstrap on provided.al2023", g.Handler, g.Runtime)
	}
	for _, k := range []string{"DATABASE_URL", "REDIS_URL", "SLUICE_KEY_PEPPER"} {
		if _, ok := g.Environment.Variables[k]; !ok {
			t.Errorf("globals: %s not set", k)
		}
	}
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for id, r := range tpl.Resources {
		if r.Type != "AWS::Serverless::Function" {
			continue
		}
		vars := r.Properties.Environment.Variables
		fn := vars["SLUICE_FUNCTION"]
		mode := vars["SLUICE_LAMBDA_MODE"]
		if mode == "" {
			mode = g.Environment.Variables["SLUICE_LAMBDA_MODE"].Value
		}
		if _, err := newHandler(fn, mode); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		served[fn] = true
		if u := r.Properties.FunctionURLConfig; u != nil && (mode != "url" || u.InvokeMode != "RESPONSE_STREAM") {
			t.Errorf("%s: a Function URL needs SLUICE_LAMBDA_MODE=url and InvokeMode RESPONSE_STREAM, got %q/%q", id, mode, u.InvokeMode)
		}
		if fn == "submit" && r.Properties.Timeout <= int(cfg.Server.RequestTimeout.Seconds()) {
			t.Errorf("%s: Timeout %ds must outlast server.request_timeout %v", id, r.Properties.Timeout, cfg.Server.RequestTimeout)
		}
		if fn == "usage-rollup" {
			sched := r.Properties.Events["Rollup"]
			if sched.Type != "Schedule" || sched.Properties["Schedule"] != "rate(5 minutes)" {
				t.Errorf("%s: want the rollup every 5 minutes (openfaas.yml's */5 * * * *), got %+v", id, sched)
			}
		}
	}
	for fn := range functions {
		if !served[fn] {
			t.Errorf("the template does not deploy %s", fn)
		}
	}
}
