package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	rollup "github.com/sluice-ai/sluice/functions/usage-rollup"
	"github.com/sluice-ai/sluice/shared/app"
)

// dispatch returns the Lambda handler: EventBridge events go to scheduled
// (when the function has a schedule), HTTP events (payload 2.0, the shape
// Function URLs and HTTP APIs share) to the function.
func dispatch(h http.Handler, mode string, scheduled func(context.Context) (any, error)) (func(context.Context, json.RawMessage) (any, error), error) {
	var serve func(context.Context, json.RawMessage) (any, error)
	switch mode {
	case "", "url":
		stream := lambdaurl.Wrap(h)
		serve = func(ctx context.Context, raw json.RawMessage) (any, error) {
			var req events.LambdaFunctionURLRequest
			if err := json.Unmarshal(raw, &req); err != nil {
				return nil, fmt.Errorf("function URL event: %w", err)
			}
			// The streaming response is an io.Reader: the runtime sends it
			// as it is produced, with the HTTP integration content type.
			return stream(ctx, &req)
		}
	case "apigw":
		adapter := httpadapter.NewV2(h)
		serve = func(ctx context.Context, raw json.RawMessage) (any, error) {
			var req events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(raw, &req); err != nil {
				return nil, fmt.Errorf("API Gateway v2 event: %w", err)
			}
			return adapter.ProxyWithContext(ctx, req)
		}
	default:
		return nil, fmt.Errorf("SLUICE_LAMBDA_MODE=%q: want url or apigw", mode)
	}
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var probe struct {
			DetailType string `json:"detail-type"`
			Source     string `json:"source"`
		}
		if json.Unmarshal(raw, &probe) == nil && probe.DetailType != "" && probe.Source != "" {
			if scheduled == nil {
				return nil, errors.New("this function has no scheduled entry point")
			}
			return scheduled(ctx)
		}
		return serve(ctx, raw)
	}, nil
}

// runScheduled runs usage-rollup's scheduled work on the process's shared
// dependencies (the HTTP handler uses the same ones; a failed open is
// retried by the next invocation; EventBridge retries).
func runScheduled(ctx context.Context) (any, error) {
	d, err := app.Shared(ctx)
	if err != nil {
		return nil, err
	}
	return rollup.RunScheduled(ctx, rollup.DepsFrom(d))
}
