// Package testcontainers has the names the simulator's test helper uses; Run
// always fails, as there is no container runtime in this build.
package testcontainers

import (
	"context"
	"errors"

	"github.com/testcontainers/testcontainers-go/wait"
)

// ErrUnavailable is what Run returns.
var ErrUnavailable = errors.New("testcontainers: containers are not available in this build (sluice tools)")

// ContainerCustomizer is an option of Run.
type ContainerCustomizer func()

// DockerContainer is never returned.
type DockerContainer struct{}

// Port is a mapped port.
type Port string

// Port returns the port number.
func (p Port) Port() string { return string(p) }

// Run fails.
func Run(context.Context, string, ...ContainerCustomizer) (*DockerContainer, error) {
	return nil, ErrUnavailable
}

// MappedPort fails.
func (*DockerContainer) MappedPort(context.Context, string) (Port, error) { return "", ErrUnavailable }

// Host fails.
func (*DockerContainer) Host(context.Context) (string, error) { return "", ErrUnavailable }

// Terminate does nothing.
func (*DockerContainer) Terminate(context.Context) error { return nil }

// WithExposedPorts is ignored.
func WithExposedPorts(...string) ContainerCustomizer { return func() {} }

// WithEntrypoint is ignored.
func WithEntrypoint(...string) ContainerCustomizer { return func() {} }

// WithCmd is ignored.
func WithCmd(...string) ContainerCustomizer { return func() {} }

// WithTmpfs is ignored.
func WithTmpfs(map[string]string) ContainerCustomizer { return func() {} }

// WithWaitStrategy is ignored.
func WithWaitStrategy(...wait.Strategy) ContainerCustomizer { return func() {} }
