package billing

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// standalone is the OpenFaaS handler: the function with its own /metrics,
// /healthz and /readyz. It opens no dependencies, so it is ready once it
// runs, and it reads no configuration, so its metrics are on as by default.
func standalone(log *slog.Logger) http.Handler {
	tel, err := telemetry.New(context.Background(), config.Telemetry{}, log, telemetry.Options{})
	if err != nil { // only tracing setup can fail, and it is off here
		log.Error("telemetry", slog.String("err", err.Error()))
	}
	return telemetry.Handler(tel, nil, log, New(Deps{Log: log}))
}
