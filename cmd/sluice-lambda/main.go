// Command sluice-lambda is the one AWS Lambda adapter for every Sluice
// function (the Lambda counterpart of the OpenFaaS template's main): the
// function is chosen by SLUICE_FUNCTION, so there is no main per function.
//
//   - SLUICE_LAMBDA_MODE=url (default): a Function URL with InvokeMode
//     RESPONSE_STREAM; streamed completions reach the client as they are
//     produced (lambdaurl).
//   - SLUICE_LAMBDA_MODE=apigw: API Gateway HTTP API (payload 2.0), buffered.
//
// usage-rollup also accepts EventBridge (scheduled) events and runs
// rollup.RunScheduled. Build for the provided.al2023 runtime as "bootstrap":
// GOOS=linux CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap ./cmd/sluice-lambda
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/sluice-ai/sluice/functions/auth"
	billing "github.com/sluice-ai/sluice/functions/billing-webhook"
	"github.com/sluice-ai/sluice/functions/submit"
	rollup "github.com/sluice-ai/sluice/functions/usage-rollup"
)

// functions are the handlers the adapter can serve, by stack-file name.
var functions = map[string]http.HandlerFunc{
	"auth":            auth.Handle,
	"billing-webhook": billing.Handle,
	"submit":          submit.Handle,
	"usage-rollup":    rollup.Handle,
}

func main() {
	// The entry point's own selection, like the template's read_timeout:
	// everything the function itself reads comes through config.Load.
	h, err := newHandler(os.Getenv("SLUICE_FUNCTION"), os.Getenv("SLUICE_LAMBDA_MODE"))
	if err != nil {
		log.Fatalf("sluice-lambda: %v", err)
	}
	lambda.Start(h)
}

func newHandler(fn, mode string) (func(context.Context, json.RawMessage) (any, error), error) {
	h, ok := functions[fn]
	if !ok {
		return nil, fmt.Errorf("SLUICE_FUNCTION=%q: want one of auth, billing-webhook, submit, usage-rollup", fn)
	}
	var scheduled func(context.Context) (any, error)
	if fn == "usage-rollup" {
		scheduled = runScheduled
	}
	return dispatch(h, mode, scheduled)
}
